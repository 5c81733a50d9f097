//! The HTTPS requests an agent makes before its media connection: redeeming the one-time code
//! (`POST /api/v1/join`) and recording the customer's consent (`POST /api/v1/consent`, with
//! the session token as bearer). The server and the agent share these types.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::control::ConsentScope;

/// `POST /api/v1/join`: the code the customer typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The six digits.
    pub code: String,
    /// The group whose page or app the customer typed the code into.
    pub group: String,
    /// Set when the customer followed a session-bound link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
}

/// The answer to a redeemed code.
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinedSession {
    /// The session.
    pub session_id: Uuid,
    /// Presented in the media connection's `Hello` and as the bearer of agent requests.
    pub session_token: String,
    /// The session media key, hex (frames are sealed under it on the device).
    pub media_key: String,
}

impl std::fmt::Debug for JoinedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinedSession")
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// `POST /api/v1/consent`: what the customer granted, by scope name (`camera`, `screen`,
/// `recording`, `screen_capture`, `file_transfer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRequest {
    /// Scope names.
    pub scopes: Vec<String>,
    /// Who consented, as the agent describes the customer's device.
    pub granted_by: String,
}

impl ConsentRequest {
    /// A request granting `scopes`.
    #[must_use]
    pub fn new(scopes: &BTreeSet<ConsentScope>, granted_by: impl Into<String>) -> Self {
        Self {
            scopes: scopes.iter().map(|s| s.name().to_owned()).collect(),
            granted_by: granted_by.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_names_are_the_wire_names() {
        let scopes: BTreeSet<_> = [ConsentScope::Camera, ConsentScope::ScreenCapture].into();
        let request = ConsentRequest::new(&scopes, "test");
        assert_eq!(request.scopes, ["camera", "screen_capture"]);
        for scope in ConsentScope::ALL {
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(json, format!("\"{}\"", scope.name()));
        }
    }
}
