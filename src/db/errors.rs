//! What a database error means for the caller: a duplicate (idempotency did
//! its job), a transient failure worth retrying, or something permanent.

use diesel::result::{DatabaseErrorKind, Error};

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
        | Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        Error::DatabaseError(_, info) => {
            let m = info.message();
            m.contains("Deadlock")
                || m.contains("Lock wait timeout")
                || m.contains("try restarting transaction")
        }
        // mysql_async I/O errors and broken connections surface as these.
        Error::BrokenTransactionManager => true,
        _ => {
            let m = e.to_string();
            m.contains("Connection")
                || m.contains("connection")
                || m.contains("Io")
                || m.contains("broken pipe")
        }
    }
}

/// Deadlock or lock wait timeout: the database is there, the work collided.
pub fn is_contention(e: &Error) -> bool {
    match e {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        Error::DatabaseError(_, info) => {
            let m = info.message();
            m.contains("Deadlock") || m.contains("Lock wait timeout")
        }
        _ => false,
    }
}
