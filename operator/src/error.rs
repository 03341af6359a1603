//! The operator's one error type. Each variant says whether retrying can help
//! ([`Error::is_transient`]) and carries a stable label for metrics and logs
//! ([`Error::metric_label`]).

/// What went wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API request failed (network, conflict, server error, RBAC).
    #[error("kubernetes API request failed: {0}")]
    Kube(#[source] kube::Error),
    /// The object cannot be deserialized by this version of the operator.
    #[error("{kind} {name} cannot be read: {message}")]
    Unreadable {
        /// Kind of the object.
        kind: &'static str,
        /// Name of the object.
        name: String,
        /// What serde said.
        message: String,
    },
    /// The spec breaks a rule; nothing runs until it changes.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A Secret, claim or policy named by the spec does not exist (checked again later).
    #[error("missing reference: {0}")]
    MissingReference(String),
    /// The BackupPolicy a RestoreRequest names is missing, unreadable or invalid.
    #[error("policy not ready: {0}")]
    PolicyNotReady(String),
    /// The Job cannot be placed (claims mounted on different nodes).
    #[error("cannot place the job: {0}")]
    Unschedulable(String),
    /// An object lacks a field the API server always sets (name, namespace, uid).
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),
    /// A workload to scale down is missing or has no selector.
    #[error("workload {workload}: {message}")]
    Workload {
        /// `Kind/name`.
        workload: String,
        /// What is wrong.
        message: String,
    },
    /// The config for the Job could not be rendered.
    #[error("cannot render the job config: {0}")]
    Render(#[source] serde_yaml::Error),
}

impl Error {
    /// Stable, low-cardinality label for metrics (`arca_reconcile_errors_total{error=...}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube_api",
            Self::Unreadable { .. } => "unreadable",
            Self::InvalidSpec(_) => "invalid_spec",
            Self::MissingReference(_) => "missing_reference",
            Self::PolicyNotReady(_) => "policy_not_ready",
            Self::Unschedulable(_) => "unschedulable",
            Self::MissingObjectKey(_) => "missing_object_key",
            Self::Workload { .. } => "workload",
            Self::Render(_) => "render",
        }
    }

    /// True when retrying later can succeed without the object changing; false when the
    /// controller should wait for the object to change.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Kube(_)
            | Self::MissingReference(_)
            | Self::PolicyNotReady(_)
            | Self::Unschedulable(_)
            | Self::Workload { .. } => true,
            Self::Unreadable { .. }
            | Self::InvalidSpec(_)
            | Self::MissingObjectKey(_)
            | Self::Render(_) => false,
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Self::Kube(e)
    }
}

/// Result of the operator's fallible steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// True when `e` is the API server's 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

/// True when `e` is the API server's 409 AlreadyExists.
pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_already_exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_errors_wait_for_a_change() {
        assert!(!Error::InvalidSpec("x".into()).is_transient());
        assert!(!Error::Unreadable {
            kind: "BackupPolicy",
            name: "p".into(),
            message: "bad".into()
        }
        .is_transient());
        assert!(Error::MissingReference("secret s".into()).is_transient());
        assert!(Error::Unschedulable("two nodes".into()).is_transient());
    }

    #[test]
    fn labels_are_stable() {
        assert_eq!(
            Error::InvalidSpec("x".into()).metric_label(),
            "invalid_spec"
        );
        assert_eq!(
            Error::MissingReference("x".into()).metric_label(),
            "missing_reference"
        );
        assert_eq!(
            Error::MissingObjectKey("uid").metric_label(),
            "missing_object_key"
        );
    }
}
