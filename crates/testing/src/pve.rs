//! A client for the Proxmox VE simulator's own tests: logins with tickets and CSRF tokens,
//! WebSockets to `vncwebsocket`, and termproxy's framing, shared by the simulator's fast
//! tests and the guest tier's test with a real guest behind it.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use porthole_pve_sim::PveSim;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// An HTTP client that accepts the simulator's self-signed certificate.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .build()
        .unwrap()
}

/// A PVE login: its ticket and CSRF token.
#[derive(Debug)]
pub struct Session {
    /// The PVE ticket, sent as the `PVEAuthCookie`.
    pub ticket: String,
    /// The CSRF token writes carry.
    pub csrf: String,
}

/// Posts a login to `url`'s `/access/ticket`; the status and the answer.
pub async fn login(
    c: &reqwest::Client,
    url: &str,
    user: &str,
    pw: &str,
) -> (reqwest::StatusCode, Value) {
    let r = c
        .post(format!("{url}/access/ticket"))
        .form(&[("username", user), ("password", pw)])
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Logs `user` in, which must work.
pub async fn session(c: &reqwest::Client, url: &str, user: &str, pw: &str) -> Session {
    let (s, body) = login(c, url, user, pw).await;
    assert_eq!(s, 200, "{body}");
    Session {
        ticket: body["data"]["ticket"].as_str().unwrap().into(),
        csrf: body["data"]["CSRFPreventionToken"].as_str().unwrap().into(),
    }
}

impl Session {
    /// The `PVEAuthCookie` header value.
    pub fn cookie(&self) -> String {
        format!("PVEAuthCookie={}", self.ticket)
    }
    /// A GET with the ticket.
    pub async fn get(&self, c: &reqwest::Client, url: &str) -> (u16, Value) {
        let r = c
            .get(url)
            .header("Cookie", self.cookie())
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap())
    }
    /// A write with the ticket and CSRF token: status, reason and answer.
    pub async fn send(
        &self,
        c: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
        form: &[(&str, &str)],
    ) -> (u16, String, Value) {
        let r = c
            .request(method, url)
            .header("Cookie", self.cookie())
            .header("CSRFPreventionToken", &self.csrf)
            .form(form)
            .send()
            .await
            .unwrap();
        let s = r.status();
        let reason = s.canonical_reason().unwrap_or("").to_owned();
        (s.as_u16(), reason, r.json().await.unwrap())
    }
    /// A POST with the ticket and CSRF token.
    pub async fn post(
        &self,
        c: &reqwest::Client,
        url: &str,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let (s, _, v) = self.send(c, reqwest::Method::POST, url, form).await;
        (s, v)
    }
}

/// Opens a WebSocket to the simulator at `path` with `cookie`; the HTTP status if refused.
pub async fn ws_connect(
    sim: &PveSim,
    cookie: &str,
    path: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let url = format!("ws://{}{path}", sim.addr());
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Cookie", cookie.parse().unwrap());
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "binary".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// Reads until `buf` holds `n` bytes, and takes them out of it.
pub async fn read_n(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
    buf: &mut Vec<u8>,
    n: usize,
) -> Vec<u8> {
    while buf.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timeout")
            .expect("closed")
            .unwrap()
        {
            Message::Binary(b) => buf.extend_from_slice(&b),
            Message::Text(t) => buf.extend_from_slice(t.as_bytes()),
            Message::Close(_) => panic!("closed"),
            _ => {}
        }
    }
    buf.drain(..n).collect()
}

/// Opens VM 100's termproxy as `alice`, logs in over `vncwebsocket`, sizes the terminal,
/// optionally types `hello`, and reads until `marker` shows up.
pub async fn termproxy_read_until(
    sim: &PveSim,
    alice: &Session,
    c: &reqwest::Client,
    marker: &str,
    send_input: bool,
) {
    let api = sim.api_url();
    let (code, v) = alice
        .post(c, &format!("{api}/nodes/pve1/qemu/100/termproxy"), &[])
        .await;
    assert_eq!(code, 200, "{v}");
    let d = &v["data"];
    assert!(
        d["port"].is_u64()
            && d["ticket"].is_string()
            && d["user"] == "alice@pve"
            && d["upid"].is_string()
    );
    let q = serde_urlencoded::to_string([
        ("port", d["port"].to_string()),
        ("vncticket", d["ticket"].as_str().unwrap().to_owned()),
    ])
    .unwrap();
    let mut ws = ws_connect(
        sim,
        &alice.cookie(),
        &format!("/api2/json/nodes/pve1/qemu/100/vncwebsocket?{q}"),
    )
    .await
    .unwrap();
    ws.send(Message::Text(
        format!("alice@pve:{}\n", d["ticket"].as_str().unwrap()).into(),
    ))
    .await
    .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_n(&mut ws, &mut buf, 2).await, b"OK");
    ws.send(Message::Text("1:80:24:".into())).await.unwrap();
    ws.send(Message::Text("2".into())).await.unwrap();
    if send_input {
        ws.send(Message::Text("0:6:hello\n".into())).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if String::from_utf8_lossy(&buf).contains(marker) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {marker:?} in {:?}",
            String::from_utf8_lossy(&buf)
        );
        let want = buf.len() + 1;
        let mut more = read_n(&mut ws, &mut buf, want).await;
        more.append(&mut buf);
        buf = more;
    }
}
