//! Which PowerJob a key prefix belongs to (docs/API.md, "Two PowerJob clusters on one
//! Redis").

use redis::RedisError;

use super::{SharedLog, StoreError};

/// What this replica knows of the key prefix's owner (see [`SharedLog::ensure_identity`]).
#[derive(Debug, Clone)]
pub(super) enum Identity {
    Unchecked,
    /// The app name matches; its `appId` was not known yet.
    NameOnly,
    Verified,
    Refused(StoreError),
}

impl SharedLog {
    /// Checks that the key prefix belongs to the PowerJob this replica follows, and
    /// records it if nobody did yet: its app name and the `appId` that PowerJob gave it
    /// (`app_id`, once authenticated). PowerJob exposes no id of its own cluster, and the
    /// servers' addresses differ between replicas of one cluster, so the app is the
    /// identity; two clusters whose app has the same name and `appId` (two fresh
    /// installs) are told apart per instance instead (`SharedMeta::origin`). Once
    /// refused, every later call is refused alike (the configuration must change).
    ///
    /// # Errors
    /// [`StoreError::Rejected`] saying why and what to change, or the store's failure.
    pub async fn ensure_identity(&self, app_id: Option<i64>) -> Result<(), StoreError> {
        let state = self.identity.lock().expect("identity lock poisoned").clone();
        match state {
            Identity::Verified => return Ok(()),
            Identity::Refused(e) => return Err(e),
            Identity::NameOnly if app_id.is_none() => return Ok(()),
            Identity::NameOnly | Identity::Unchecked => {}
        }
        let mut conn = self.connection(&self.reads).await?;
        let reply: Result<(String, String), RedisError> = self
            .identity_script
            .key(format!("{}:powerjob", self.prefix))
            .arg(&self.app_name)
            .arg(app_id.map(|id| id.to_string()).unwrap_or_default())
            .invoke_async(&mut conn)
            .await;
        let (what, stored) = match reply {
            Ok(r) => r,
            Err(e) => return Err(self.failed(&self.reads, "identity", &e).await),
        };
        let (prefix, name) = (&self.prefix, &self.app_name);
        let change = "Replicas of two PowerJob clusters must not share one: set another [cluster] key_prefix \
                      for this one (or give it its own Redis)";
        let next = match (what.as_str(), app_id) {
            ("ok", Some(_)) => Identity::Verified,
            ("ok", None) => Identity::NameOnly,
            ("name", _) => Identity::Refused(StoreError::Rejected(format!(
                "key prefix \"{prefix}\" belongs to PowerJob app \"{stored}\", and this replica follows app \
                 \"{name}\". {change}"
            ))),
            (_, id) => Identity::Refused(StoreError::Rejected(format!(
                "key prefix \"{prefix}\" belongs to the PowerJob where app \"{name}\" has appId {stored}; this \
                 replica's PowerJob gives it appId {}, so it is another PowerJob cluster. {change}",
                id.unwrap_or_default()
            ))),
        };
        if let Identity::Refused(e) = &next {
            tracing::error!(error = %e, "this replica refuses the shared store");
        }
        *self.identity.lock().expect("identity lock poisoned") = next.clone();
        match next {
            Identity::Refused(e) => Err(e),
            _ => Ok(()),
        }
    }
}
