//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go does it: the
//! holder renews `renewTime` well within `leaseDurationSeconds`; another replica takes the
//! Lease over only once it has expired; every write carries the `resourceVersion` it read,
//! so two replicas can never both win. A leader that cannot renew in time stops (the
//! process exits and restarts as a candidate) rather than risk two leaders.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ObjectMeta;
use kube::Api;

use crate::error::{is_already_exists, Error, Result};

/// What to do with the Lease as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No Lease yet: create it holding it.
    Create,
    /// We hold it: renew it.
    Renew,
    /// It expired (or was released): take it over.
    TakeOver,
    /// Another replica holds it until this time.
    Wait(Timestamp),
}

/// Decide from the Lease as read, our identity and the time.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    let last = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match last.and_then(|t| t.checked_add(duration).ok()) {
        Some(expires) if expires > now => Decision::Wait(expires),
        _ => Decision::TakeOver,
    }
}

/// Leader election for one identity on one Lease.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaderElector {
    /// Elect on Lease `name` through `api` as `identity`, holding it for `duration`.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
        }
    }

    /// How often a leader renews (a third of the duration).
    pub fn renew_interval(&self) -> Duration {
        self.duration / 3
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(15)),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One round: read the Lease and create, renew or take it over when allowed. Returns
    /// whether we hold it afterwards. A lost race (409) is "not leading", not an error.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<bool> {
        let lease = self.api.get_opt(&self.name).await?;
        match decide(lease.as_ref(), &self.identity, now) {
            Decision::Wait(_) => Ok(false),
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(now, None, 0)),
                };
                match self
                    .api
                    .create(&crate::constants::post_params(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if is_already_exists(&e) => Ok(false),
                    Err(e) => Err(Error::Kube(e)),
                }
            }
            decision @ (Decision::Renew | Decision::TakeOver) => {
                let Some(mut lease) = lease else {
                    return Ok(false);
                };
                let old = lease.spec.clone().unwrap_or_default();
                let transitions = old.lease_transitions.unwrap_or(0);
                lease.spec = Some(if decision == Decision::Renew {
                    self.spec(now, old.acquire_time, transitions)
                } else {
                    self.spec(now, None, transitions + 1)
                });
                // `lease` carries the resourceVersion we read: a concurrent writer makes
                // this fail with 409 instead of silently winning twice.
                match self
                    .api
                    .replace(&self.name, &crate::constants::post_params(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
                    Err(e) => Err(Error::Kube(e)),
                }
            }
        }
    }

    /// Wait until this replica leads (or `stop` resolves: then false).
    pub async fn acquire(&self, stop: impl std::future::Future<Output = ()>) -> bool {
        tokio::pin!(stop);
        loop {
            match self.try_acquire_or_renew(Timestamp::now()).await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, lease = %self.name, "cannot read the leader lease; retrying")
                }
            }
            tokio::select! {
                () = &mut stop => return false,
                () = tokio::time::sleep(self.renew_interval()) => {}
            }
        }
    }

    /// Keep renewing; returns when leadership is lost (a renewal failed for longer than the
    /// lease lasts, or another replica took it).
    pub async fn hold(&self) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew_interval()).await;
            match self.try_acquire_or_renew(Timestamp::now()).await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.name, "another replica took the leader lease");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, lease = %self.name, "cannot renew the leader lease");
                    // Stop well before the lease could expire for the others.
                    if last_renewed.elapsed() + self.renew_interval() >= self.duration {
                        tracing::error!(lease = %self.name, "leader lease could not be renewed in time");
                        return;
                    }
                }
            }
        }
    }

    /// Give the Lease up (on shutdown) so another replica takes over at once.
    pub async fn release(&self) -> Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.name, &crate::constants::post_params(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(()),
            Err(e) => Err(Error::Kube(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fixtures::{Call, FakeApi};
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn lease(holder: Option<&str>, renewed: &str) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": "arca-operator", "namespace": "arca-system", "resourceVersion": "7"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "acquireTime": "2026-11-23T10:00:00.000000Z", "renewTime": renewed,
                     "leaseTransitions": 2}
        }))
        .unwrap()
    }

    #[test]
    fn decisions() {
        let now = ts("2026-11-23T10:00:10Z");
        assert_eq!(decide(None, "me", now), Decision::Create);
        let mine = lease(Some("me"), "2026-11-23T10:00:05.000000Z");
        assert_eq!(decide(Some(&mine), "me", now), Decision::Renew);
        let theirs = lease(Some("other"), "2026-11-23T10:00:05.000000Z");
        assert_eq!(
            decide(Some(&theirs), "me", now),
            Decision::Wait(ts("2026-11-23T10:00:20Z"))
        );
        let expired = lease(Some("other"), "2026-11-23T09:59:00.000000Z");
        assert_eq!(decide(Some(&expired), "me", now), Decision::TakeOver);
        let released = lease(None, "2026-11-23T10:00:09.000000Z");
        assert_eq!(decide(Some(&released), "me", now), Decision::TakeOver);
    }

    fn elector(client: kube::Client) -> LeaderElector {
        LeaderElector::new(
            Api::namespaced(client, "arca-system"),
            "arca-operator",
            "me",
            Duration::from_secs(15),
        )
    }

    const LEASE_PATH: &str =
        "/apis/coordination.k8s.io/v1/namespaces/arca-system/leases/arca-operator";

    #[tokio::test]
    async fn creates_a_missing_lease() {
        let (client, fake) = FakeApi::new();
        let server = fake.run(vec![
            Call::get(LEASE_PATH).not_found(),
            Call::post("/apis/coordination.k8s.io/v1/namespaces/arca-system/leases")
                .check(|body| {
                    assert_eq!(body["spec"]["holderIdentity"], "me");
                    assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
                    assert_eq!(body["spec"]["leaseTransitions"], 0);
                })
                .echo(),
        ]);
        let won = elector(client)
            .try_acquire_or_renew(ts("2026-11-23T10:00:10Z"))
            .await
            .unwrap();
        assert!(won);
        server.done().await;
    }

    #[tokio::test]
    async fn takes_over_an_expired_lease_with_its_resource_version() {
        let (client, fake) = FakeApi::new();
        let expired = lease(Some("other"), "2026-11-23T09:59:00.000000Z");
        let server = fake.run(vec![
            Call::get(LEASE_PATH).respond(&expired),
            Call::put(LEASE_PATH)
                .check(|body| {
                    assert_eq!(body["metadata"]["resourceVersion"], "7");
                    assert_eq!(body["spec"]["holderIdentity"], "me");
                    assert_eq!(body["spec"]["leaseTransitions"], 3);
                })
                .echo(),
        ]);
        assert!(elector(client)
            .try_acquire_or_renew(ts("2026-11-23T10:00:10Z"))
            .await
            .unwrap());
        server.done().await;
    }

    #[tokio::test]
    async fn waits_while_another_replica_holds_it() {
        let (client, fake) = FakeApi::new();
        let held = lease(Some("other"), "2026-11-23T10:00:05.000000Z");
        let server = fake.run(vec![Call::get(LEASE_PATH).respond(&held)]);
        assert!(!elector(client)
            .try_acquire_or_renew(ts("2026-11-23T10:00:10Z"))
            .await
            .unwrap());
        server.done().await;
    }

    #[tokio::test]
    async fn a_lost_race_is_not_leading() {
        let (client, fake) = FakeApi::new();
        let expired = lease(Some("other"), "2026-11-23T09:59:00.000000Z");
        let server = fake.run(vec![
            Call::get(LEASE_PATH).respond(&expired),
            Call::put(LEASE_PATH).status(409, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "conflict"})),
        ]);
        assert!(!elector(client)
            .try_acquire_or_renew(ts("2026-11-23T10:00:10Z"))
            .await
            .unwrap());
        server.done().await;
    }

    #[tokio::test]
    async fn release_gives_the_lease_up() {
        let (client, fake) = FakeApi::new();
        let mine = lease(Some("me"), "2026-11-23T10:00:05.000000Z");
        let server = fake.run(vec![
            Call::get(LEASE_PATH).respond(&mine),
            Call::put(LEASE_PATH)
                .check(|body| {
                    assert!(body["spec"]["holderIdentity"].is_null());
                    assert_eq!(body["spec"]["leaseDurationSeconds"], 1);
                })
                .echo(),
        ]);
        elector(client).release().await.unwrap();
        server.done().await;
    }
}
