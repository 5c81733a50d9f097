//! The operators' way to the agent: what an operator watching live asks (input for the
//! customer's screen, lifting a blind — `proto::OperatorRequest`) goes to the session's agent
//! connection as a `ServerControl` message, through a small inbox the connection opens while
//! it serves. The agent decides: input is injected only while the customer is idle, a blind
//! is never lifted; what it answers (`control`, `refused`) goes back to the watchers as live
//! notices and into the audit log. Nothing here waits on the agent.

use std::collections::HashMap;
use std::sync::Mutex;

use proto::ServerControl;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Messages waiting for an agent; requests beyond it are refused, not queued.
const INBOX: usize = 64;

/// The inboxes of the agent connections serving now, by session.
#[derive(Debug, Default)]
pub struct AgentInboxes {
    inboxes: Mutex<HashMap<Uuid, mpsc::Sender<ServerControl>>>,
}

impl AgentInboxes {
    /// The inbox of the connection serving `session` now (a newer connection's replaces an
    /// older one's).
    pub fn open(&self, session: Uuid) -> mpsc::Receiver<ServerControl> {
        let (sender, receiver) = mpsc::channel(INBOX);
        self.inboxes
            .lock()
            .expect("inboxes lock")
            .insert(session, sender);
        receiver
    }

    /// The connection serving `session` stopped (its inbox is dropped once nobody holds it).
    pub fn close(&self, session: Uuid) {
        let mut inboxes = self.inboxes.lock().expect("inboxes lock");
        if inboxes.get(&session).is_some_and(mpsc::Sender::is_closed) {
            inboxes.remove(&session);
        }
    }

    /// Hands `message` to the session's agent.
    ///
    /// # Errors
    /// Why it could not: no agent connected, or the agent is not keeping up.
    pub fn send(&self, session: Uuid, message: ServerControl) -> Result<(), &'static str> {
        let inboxes = self.inboxes.lock().expect("inboxes lock");
        let Some(inbox) = inboxes.get(&session) else {
            return Err("no agent is connected");
        };
        inbox.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => "the agent is not keeping up; try again",
            mpsc::error::TrySendError::Closed(_) => "no agent is connected",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_reach_the_connection_serving_now() {
        let inboxes = AgentInboxes::default();
        let session = Uuid::new_v4();
        assert!(inboxes.send(session, ServerControl::LiftBlinds).is_err());
        let mut old = inboxes.open(session);
        let mut new = inboxes.open(session);
        inboxes.send(session, ServerControl::LiftBlinds).unwrap();
        assert_eq!(new.recv().await, Some(ServerControl::LiftBlinds));
        assert!(old.try_recv().is_err());
        drop(new);
        inboxes.close(session);
        assert_eq!(
            inboxes.send(session, ServerControl::LiftBlinds),
            Err("no agent is connected")
        );
    }
}
