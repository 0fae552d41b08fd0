//! The RFB (VNC) security handshake, done by the gateway on both sides so that the
//! hypervisor's VNC password never reaches the browser.
//!
//! Towards the VNC server the gateway is a client:
//! 1. read the server's `RFB 003.00x\n`, answer with the highest version both speak;
//! 2. read the offered security types; pick VNC authentication (2) when a password is known,
//!    else None (1);
//! 3. for VNC authentication, encrypt the 16-byte challenge with DES under the password;
//! 4. read the SecurityResult (always for 3.8, and for VNC authentication in 3.3/3.7).
//!
//! Towards the browser the gateway is a server that offers only security type None. After
//! both handshakes, ClientInit, ServerInit and everything after are relayed unchanged.
//!
//! Every length and count read from a peer is bounded before anything is allocated, and the
//! parsers never read past what the step needs, so a hostile peer can only fail the
//! handshake. The parsers are pure functions over byte slices, fuzzed by property tests.

use des::Des;
use des::cipher::{BlockCipherEncrypt, KeyInit};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest failure reason accepted from a server.
pub const MAX_REASON_LEN: u32 = 4096;

/// RFB security type None.
pub const SECURITY_NONE: u8 = 1;
/// RFB security type VNC authentication.
pub const SECURITY_VNC: u8 = 2;

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum RfbError {
    /// The peer sent bytes that are not RFB.
    #[error("not RFB: {0}")]
    Protocol(String),
    /// The server refused the connection, with its reason.
    #[error("the VNC server refused the connection: {0}")]
    Refused(String),
    /// The server offers no security type the gateway can use.
    #[error("the VNC server offers no usable security type (offered {0:?})")]
    NoUsableSecurity(Vec<u8>),
    /// The server wants a password and none is known.
    #[error("the VNC server needs a password and none is configured")]
    PasswordNeeded,
    /// The password was wrong.
    #[error("VNC authentication failed{}", .0.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    AuthFailed(Option<String>),
    /// The connection failed mid-handshake.
    #[error("connection failed during the RFB handshake")]
    Io(#[from] std::io::Error),
}

/// An RFB protocol version, as the handshake negotiates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// 3.3: the server picks the security type.
    V3_3,
    /// 3.7: the client picks; no SecurityResult after None.
    V3_7,
    /// 3.8: the client picks; a SecurityResult always, with a reason on failure.
    V3_8,
}

impl Version {
    /// The 12-byte ProtocolVersion message.
    pub fn message(self) -> &'static [u8; 12] {
        match self {
            Version::V3_3 => b"RFB 003.003\n",
            Version::V3_7 => b"RFB 003.007\n",
            Version::V3_8 => b"RFB 003.008\n",
        }
    }
}

/// Parses a 12-byte ProtocolVersion message. Minor versions other than 3, 7 and 8 are
/// treated as the spec says: anything above 8 as 3.8, 5 (some old clients) as 3.3.
pub fn parse_version(bytes: &[u8]) -> Result<Version, RfbError> {
    let bad = || {
        RfbError::Protocol(format!(
            "bad version message {:?}",
            String::from_utf8_lossy(bytes)
        ))
    };
    if bytes.len() != 12 || &bytes[..4] != b"RFB " || bytes[7] != b'.' || bytes[11] != b'\n' {
        return Err(bad());
    }
    let number = |digits: &[u8]| -> Option<u32> {
        digits.iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let (Some(major), Some(minor)) = (number(&bytes[4..7]), number(&bytes[8..11])) else {
        return Err(bad());
    };
    match (major, minor) {
        (3, 0..=6) => Ok(Version::V3_3),
        (3, 7) => Ok(Version::V3_7),
        (3, _) | (4.., _) => Ok(Version::V3_8),
        _ => Err(bad()),
    }
}

/// The outcome of parsing a message that may not have fully arrived yet.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// More bytes are needed: at least this many in total.
    Incomplete(usize),
    /// The value and how many bytes it used.
    Done(T, usize),
}

/// Parses a 3.7/3.8 security-types message: a count and that many types. A count of zero
/// means failure and is followed by a reason string.
pub fn parse_security_types(bytes: &[u8]) -> Result<Parsed<Result<Vec<u8>, String>>, RfbError> {
    let Some(&count) = bytes.first() else {
        return Ok(Parsed::Incomplete(1));
    };
    if count == 0 {
        return Ok(match parse_reason(&bytes[1..])? {
            Parsed::Incomplete(n) => Parsed::Incomplete(1 + n),
            Parsed::Done(reason, used) => Parsed::Done(Err(reason), 1 + used),
        });
    }
    let needed = 1 + usize::from(count);
    if bytes.len() < needed {
        return Ok(Parsed::Incomplete(needed));
    }
    Ok(Parsed::Done(Ok(bytes[1..needed].to_vec()), needed))
}

/// Parses a length-prefixed reason string, at most [`MAX_REASON_LEN`] bytes.
pub fn parse_reason(bytes: &[u8]) -> Result<Parsed<String>, RfbError> {
    if bytes.len() < 4 {
        return Ok(Parsed::Incomplete(4));
    }
    let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if len > MAX_REASON_LEN {
        return Err(RfbError::Protocol(format!("reason string of {len} bytes")));
    }
    let needed = 4 + len as usize;
    if bytes.len() < needed {
        return Ok(Parsed::Incomplete(needed));
    }
    Ok(Parsed::Done(
        String::from_utf8_lossy(&bytes[4..needed]).into_owned(),
        needed,
    ))
}

/// The VNC authentication response: the challenge encrypted with DES, keyed by the first 8
/// bytes of the password (zero-padded) with each byte's bits reversed, as VNC does.
pub fn vnc_auth_response(challenge: &[u8; 16], password: &str) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, p) in key.iter_mut().zip(password.as_bytes()) {
        *k = p.reverse_bits();
    }
    let cipher = Des::new_from_slice(&key).expect("DES takes an 8-byte key");
    let mut response = *challenge;
    for block in response.chunks_exact_mut(8) {
        cipher.encrypt_block(block.try_into().expect("8-byte block"));
    }
    response
}

/// Reads a whole message that `parse` recognises, a step at a time, never reading past it.
async fn read_message<R, T>(
    reader: &mut R,
    mut parse: impl FnMut(&[u8]) -> Result<Parsed<T>, RfbError>,
) -> Result<T, RfbError>
where
    R: AsyncRead + Unpin,
{
    let mut buf = Vec::new();
    loop {
        match parse(&buf)? {
            Parsed::Done(value, _) => return Ok(value),
            Parsed::Incomplete(total) => {
                let start = buf.len();
                buf.resize(total, 0);
                reader.read_exact(&mut buf[start..]).await?;
            }
        }
    }
}

async fn read_u32<R: AsyncRead + Unpin>(reader: &mut R) -> Result<u32, RfbError> {
    let mut word = [0u8; 4];
    reader.read_exact(&mut word).await?;
    Ok(u32::from_be_bytes(word))
}

/// Authenticates to a VNC server as a client. On success the stream is positioned where the
/// client sends ClientInit.
pub async fn authenticate_to_server<S>(
    stream: &mut S,
    password: Option<&str>,
) -> Result<(), RfbError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut greeting = [0u8; 12];
    stream.read_exact(&mut greeting).await?;
    let version = parse_version(&greeting)?.min(Version::V3_8);
    stream.write_all(version.message()).await?;

    let chosen = if version == Version::V3_3 {
        let chosen = read_u32(stream).await?;
        if chosen == 0 {
            let reason = read_message(stream, parse_reason).await?;
            return Err(RfbError::Refused(reason));
        }
        u8::try_from(chosen).map_err(|_| RfbError::NoUsableSecurity(vec![]))?
    } else {
        let offered = read_message(stream, parse_security_types)
            .await?
            .map_err(RfbError::Refused)?;
        let chosen = if password.is_some() && offered.contains(&SECURITY_VNC) {
            SECURITY_VNC
        } else if offered.contains(&SECURITY_NONE) {
            SECURITY_NONE
        } else if offered.contains(&SECURITY_VNC) {
            return Err(RfbError::PasswordNeeded);
        } else {
            return Err(RfbError::NoUsableSecurity(offered));
        };
        stream.write_all(&[chosen]).await?;
        chosen
    };

    match chosen {
        SECURITY_NONE if version < Version::V3_8 => return Ok(()),
        SECURITY_NONE => {}
        SECURITY_VNC => {
            let password = password.ok_or(RfbError::PasswordNeeded)?;
            let mut challenge = [0u8; 16];
            stream.read_exact(&mut challenge).await?;
            stream
                .write_all(&vnc_auth_response(&challenge, password))
                .await?;
        }
        other => return Err(RfbError::NoUsableSecurity(vec![other])),
    }
    match read_u32(stream).await? {
        0 => Ok(()),
        _ if version == Version::V3_8 => Err(RfbError::AuthFailed(Some(
            read_message(stream, parse_reason).await?,
        ))),
        _ => Err(RfbError::AuthFailed(None)),
    }
}

/// The gateway's side of the handshake with a viewer: offer only security type None.
/// Returns the version the viewer chose; the viewer's ClientInit comes next.
pub async fn greet_viewer<S>(viewer: &mut S) -> Result<Version, RfbError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let version = exchange_versions(viewer).await?;
    match version {
        Version::V3_3 => {
            viewer
                .write_all(&u32::from(SECURITY_NONE).to_be_bytes())
                .await?;
        }
        Version::V3_7 | Version::V3_8 => {
            viewer.write_all(&[1, SECURITY_NONE]).await?;
            viewer.flush().await?;
            let mut choice = [0u8; 1];
            viewer.read_exact(&mut choice).await?;
            if choice[0] != SECURITY_NONE {
                return Err(RfbError::Protocol(format!(
                    "viewer chose security type {}",
                    choice[0]
                )));
            }
            if version == Version::V3_8 {
                viewer.write_all(&0u32.to_be_bytes()).await?;
            }
        }
    }
    viewer.flush().await?;
    Ok(version)
}

/// Tells a viewer the console is unavailable, the way RFB reports a failure: after the
/// version exchange, no security types and a reason.
pub async fn refuse_viewer<S>(viewer: &mut S, reason: &str) -> Result<(), RfbError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let version = exchange_versions(viewer).await?;
    let reason = &reason.as_bytes()[..reason.len().min(MAX_REASON_LEN as usize)];
    let mut message = Vec::with_capacity(8 + reason.len());
    match version {
        Version::V3_3 => message.extend_from_slice(&0u32.to_be_bytes()),
        Version::V3_7 | Version::V3_8 => message.push(0),
    }
    message.extend_from_slice(&(reason.len() as u32).to_be_bytes());
    message.extend_from_slice(reason);
    viewer.write_all(&message).await?;
    viewer.flush().await?;
    Ok(())
}

/// Sends the gateway's version (3.8) and reads the viewer's.
async fn exchange_versions<S>(viewer: &mut S) -> Result<Version, RfbError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    viewer.write_all(Version::V3_8.message()).await?;
    viewer.flush().await?;
    let mut answer = [0u8; 12];
    viewer.read_exact(&mut answer).await?;
    parse_version(&answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn versions_parse_per_the_spec() {
        assert_eq!(parse_version(b"RFB 003.008\n").unwrap(), Version::V3_8);
        assert_eq!(parse_version(b"RFB 003.007\n").unwrap(), Version::V3_7);
        assert_eq!(parse_version(b"RFB 003.003\n").unwrap(), Version::V3_3);
        assert_eq!(parse_version(b"RFB 003.005\n").unwrap(), Version::V3_3);
        assert_eq!(parse_version(b"RFB 003.889\n").unwrap(), Version::V3_8);
        for bad in [
            &b"RFB 003.008"[..],
            b"HTTP/1.1 200",
            b"RFB 00x.008\n",
            b"RFB 002.008\n",
        ] {
            assert!(parse_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn security_types_and_reasons_parse_incrementally() {
        assert_eq!(parse_security_types(&[]).unwrap(), Parsed::Incomplete(1));
        assert_eq!(
            parse_security_types(&[2, 1]).unwrap(),
            Parsed::Incomplete(3)
        );
        assert_eq!(
            parse_security_types(&[2, 1, 2, 9]).unwrap(),
            Parsed::Done(Ok(vec![1, 2]), 3)
        );
        assert_eq!(
            parse_security_types(&[0, 0, 0]).unwrap(),
            Parsed::Incomplete(5)
        );
        assert_eq!(
            parse_security_types(&[0, 0, 0, 0, 2, b'n', b'o']).unwrap(),
            Parsed::Done(Err("no".into()), 7)
        );
        assert!(parse_reason(&u32::MAX.to_be_bytes()).is_err());
    }

    #[test]
    fn des_matches_the_textbook_vector() {
        // FIPS 46 worked example: key 133457799BBCDFF1, plaintext 0123456789ABCDEF.
        let key: [u8; 8] = [0x13, 0x34, 0x57, 0x79, 0x9B, 0xBC, 0xDF, 0xF1];
        let cipher = Des::new_from_slice(&key).unwrap();
        let mut block = [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF];
        cipher.encrypt_block((&mut block[..]).try_into().unwrap());
        assert_eq!(block, [0x85, 0xE8, 0x13, 0x54, 0x0F, 0x0A, 0xB4, 0x05]);
    }

    #[test]
    fn vnc_keys_are_bit_reversed_and_truncated() {
        let challenge = [7u8; 16];
        let long = vnc_auth_response(&challenge, "12345678-ignored");
        assert_eq!(long, vnc_auth_response(&challenge, "12345678"));
        let reversed: String = "12345678"
            .bytes()
            .map(|b| b.reverse_bits() as char)
            .collect();
        let key: Vec<u8> = reversed.chars().map(|c| c as u8).collect();
        let cipher = Des::new_from_slice(&key).unwrap();
        let mut block = [7u8; 8];
        cipher.encrypt_block((&mut block[..]).try_into().unwrap());
        assert_eq!(&long[..8], &block);
    }

    /// A scripted VNC server on one end of a duplex pipe.
    async fn handshake_against(
        server_script: Vec<u8>,
        password: Option<&str>,
    ) -> (Result<(), RfbError>, Vec<u8>) {
        let (mut ours, mut theirs) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            theirs.write_all(&server_script).await.unwrap();
            let mut heard = vec![0u8; 4096];
            let mut total = 0;
            while let Ok(Ok(n @ 1..)) = tokio::time::timeout(
                std::time::Duration::from_millis(200),
                theirs.read(&mut heard[total..]),
            )
            .await
            {
                total += n;
            }
            heard.truncate(total);
            heard
        });
        let result = authenticate_to_server(&mut ours, password).await;
        drop(ours);
        (result, server.await.unwrap())
    }

    #[tokio::test]
    async fn vnc_authentication_answers_the_challenge() {
        let mut script = b"RFB 003.008\n".to_vec();
        script.extend_from_slice(&[2, SECURITY_NONE, SECURITY_VNC]);
        script.extend_from_slice(&[9u8; 16]);
        script.extend_from_slice(&0u32.to_be_bytes());
        let (result, heard) = handshake_against(script, Some("secret")).await;
        result.unwrap();
        let mut expected = b"RFB 003.008\n".to_vec();
        expected.push(SECURITY_VNC);
        expected.extend_from_slice(&vnc_auth_response(&[9u8; 16], "secret"));
        assert_eq!(heard, expected);
    }

    #[tokio::test]
    async fn failures_carry_the_server_reason() {
        let mut script = b"RFB 003.008\n".to_vec();
        script.extend_from_slice(&[1, SECURITY_VNC]);
        script.extend_from_slice(&[1u8; 16]);
        script.extend_from_slice(&1u32.to_be_bytes());
        script.extend_from_slice(&14u32.to_be_bytes());
        script.extend_from_slice(b"bad password!!");
        let (result, _) = handshake_against(script, Some("wrong")).await;
        assert_eq!(
            result.unwrap_err().to_string(),
            "VNC authentication failed: bad password!!"
        );

        let mut script = b"RFB 003.008\n".to_vec();
        script.extend_from_slice(&[1, SECURITY_VNC]);
        let (result, _) = handshake_against(script, None).await;
        assert!(matches!(result, Err(RfbError::PasswordNeeded)));

        let mut script = b"RFB 003.003\n".to_vec();
        script.extend_from_slice(&0u32.to_be_bytes());
        script.extend_from_slice(&5u32.to_be_bytes());
        script.extend_from_slice(b"busy!");
        let (result, _) = handshake_against(script, None).await;
        assert_eq!(
            result.unwrap_err().to_string(),
            "the VNC server refused the connection: busy!"
        );
    }

    #[tokio::test]
    async fn viewers_are_offered_only_none() {
        for (version, expected_tail) in [
            (&b"RFB 003.008\n"[..], &[1u8, 1, 0, 0, 0, 0][..]),
            (b"RFB 003.007\n", &[1, 1][..]),
            (b"RFB 003.003\n", &[0, 0, 0, 1][..]),
        ] {
            let (mut gateway, mut viewer) = tokio::io::duplex(1024);
            let version = version.to_vec();
            let viewer_task = tokio::spawn(async move {
                let mut greeting = [0u8; 12];
                viewer.read_exact(&mut greeting).await.unwrap();
                viewer.write_all(&version).await.unwrap();
                if version != b"RFB 003.003\n" {
                    viewer.write_all(&[SECURITY_NONE]).await.unwrap();
                }
                let mut rest = Vec::new();
                let mut buf = [0u8; 64];
                while let Ok(Ok(n @ 1..)) = tokio::time::timeout(
                    std::time::Duration::from_millis(100),
                    viewer.read(&mut buf),
                )
                .await
                {
                    rest.extend_from_slice(&buf[..n]);
                }
                (greeting, rest)
            });
            greet_viewer(&mut gateway).await.unwrap();
            drop(gateway);
            let (greeting, rest) = viewer_task.await.unwrap();
            assert_eq!(&greeting, b"RFB 003.008\n");
            assert_eq!(rest, expected_tail);
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic_or_overread(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_version(&bytes);
            if let Ok(Parsed::Done(_, used)) = parse_security_types(&bytes) {
                prop_assert!(used <= bytes.len());
            }
            if let Ok(Parsed::Incomplete(needed)) = parse_security_types(&bytes) {
                prop_assert!(needed > bytes.len() && needed <= 1 + 4 + MAX_REASON_LEN as usize + 255);
            }
            if let Ok(Parsed::Done(reason, used)) = parse_reason(&bytes) {
                prop_assert!(used <= bytes.len() && reason.len() <= 3 * MAX_REASON_LEN as usize);
            }
        }

        #[test]
        fn the_handshake_survives_any_server_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                // The server says its bytes and hangs up; the handshake must end, without a
                // panic, whatever they were.
                let (mut ours, mut theirs) = tokio::io::duplex(1 << 16);
                theirs.write_all(&bytes).await.unwrap();
                drop(theirs);
                let _ = authenticate_to_server(&mut ours, Some("pw")).await;
            });
        }
    }
}
