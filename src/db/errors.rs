//! What a database error means for the caller: a duplicate (idempotency did
//! its job), a transient failure worth retrying, or something permanent.

use diesel::result::{DatabaseErrorKind, Error};

/// What a database error means for whoever tries again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// A unique key refused the row: it is there already (a concurrent
    /// writer got there first).
    Duplicate,
    /// Deadlock or lock wait timeout: the work collided and nothing of it
    /// was kept.
    Contention,
    /// The server or the connection went away. The outcome of a commit in
    /// flight is unknown: read before writing again.
    Connection,
    /// Anything else: trying the same statement again gives the same error.
    Permanent,
}

impl ErrorClass {
    /// The `cause` label of `batch_failures_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Duplicate => "duplicate",
            ErrorClass::Contention => "contention",
            ErrorClass::Connection => "connection",
            ErrorClass::Permanent => "permanent",
        }
    }
}

/// Classifies `e`.
pub fn classify(e: &Error) -> ErrorClass {
    if is_duplicate(e) {
        ErrorClass::Duplicate
    } else if is_contention(e) {
        ErrorClass::Contention
    } else if is_retryable(e) {
        ErrorClass::Connection
    } else {
        ErrorClass::Permanent
    }
}

/// A unique-key violation: the row is already there.
pub fn is_duplicate(e: &Error) -> bool {
    matches!(
        e,
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Deadlocks, lock wait timeouts, lost connections and pool time-outs: the
/// same work may succeed when tried again.
pub fn is_retryable(e: &Error) -> bool {
    match e {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _)
        | Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
        | Error::BrokenTransactionManager => true,
        Error::DatabaseError(_, info) => is_contention(e) || connection_trouble(info.message()),
        other => connection_trouble(&other.to_string()),
    }
}

/// Deadlock or lock wait timeout: the database is there, the work collided.
pub fn is_contention(e: &Error) -> bool {
    match e {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        Error::DatabaseError(_, info) => {
            let m = info.message();
            m.contains("Deadlock")
                || m.contains("Lock wait timeout")
                || m.contains("try restarting transaction")
        }
        _ => false,
    }
}

/// Words mysql_async and the pool use when the server is out of reach.
fn connection_trouble(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    [
        "connection",
        "input/output",
        "i/o error",
        "broken pipe",
        "timed out",
        "server has gone away",
        "unexpected eof",
    ]
    .iter()
    .any(|w| m.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Info(&'static str);
    impl diesel::result::DatabaseErrorInformation for Info {
        fn message(&self) -> &str {
            self.0
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            None
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn unknown(m: &'static str) -> Error {
        Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new(Info(m)))
    }

    #[test]
    fn classifies_mysql_messages() {
        let deadlock =
            unknown("Deadlock found when trying to get lock; try restarting transaction");
        assert!(is_retryable(&deadlock) && is_contention(&deadlock));
        let io = unknown("Input/output error: Driver error: `Connection to the server is closed.'");
        assert!(is_retryable(&io) && !is_contention(&io));
        let syntax = unknown("You have an error in your SQL syntax");
        assert!(!is_retryable(&syntax));
        let dup = Error::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new(Info("Duplicate entry")),
        );
        assert!(is_duplicate(&dup) && !is_retryable(&dup));
    }
}
