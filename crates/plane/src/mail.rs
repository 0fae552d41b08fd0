//! Outgoing mail: expiry reminders and the admins' daily summary, sent over SMTP with
//! lettre. The server is given as a URL (`smtp://host:25`, `smtp://host:587?tls=required`
//! for STARTTLS, `smtps://host:465` for TLS from the start, with `user:password@` if the
//! server wants a login), so passwords can come from the environment instead of the command
//! line.

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Why a mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// An address does not parse.
    #[error("{field}: {value:?} is not a mail address")]
    Address {
        /// Which one: `to` or `--smtp-from`.
        field: &'static str,
        /// What was given.
        value: String,
    },
    /// The message could not be built.
    #[error("building the message")]
    Build(#[source] lettre::error::Error),
    /// The server refused it or could not be reached. Retrying later may work.
    #[error("the mail server did not take the message")]
    Smtp(#[source] lettre::transport::smtp::Error),
}

/// Sends mail through one SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the server's credentials.
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish()
    }
}

impl Mailer {
    /// A mailer for the server at `url`, sending as `from`.
    pub fn new(url: &str, from: &str) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| {
                anyhow::anyhow!(
                    "--smtp-url: {e}; give it as smtp://HOST:PORT, smtp://HOST:587?tls=required \
                     or smtps://HOST:465"
                )
            })?
            .build();
        let from = from.parse().map_err(|_| MailError::Address {
            field: "--smtp-from",
            value: from.to_owned(),
        })?;
        Ok(Self { transport, from })
    }

    /// Sends a plain-text mail.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|_| MailError::Address {
            field: "to",
            value: to.to_owned(),
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(MailError::Build)?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(MailError::Smtp)
    }
}
