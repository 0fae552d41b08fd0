//! Who is asking: the user behind a request's token, with the token's hash (for logout and
//! CSRF) and the address it came from. The HTTP edge finds it (`extract.rs`); services take
//! it and decide what it may do.

use std::net::SocketAddr;

use porthole_core::Role;
use porthole_store::users::UserRecord;

use crate::error::ApiError;

/// The authenticated user making the request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who they are.
    pub user: UserRecord,
    /// The hash of the token they presented, for logout.
    pub token_hash: String,
    /// Where the request came from.
    pub remote: Option<SocketAddr>,
}

impl Caller {
    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// Fails unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this needs the admin role".into()))
        }
    }
}
