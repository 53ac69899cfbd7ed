//! What a database error means for the caller: a duplicate (idempotency did
//! its job), a transient failure worth retrying, or something permanent.
//! Decided by diesel's error kind and the MySQL error number only, never by
//! the words of the message: a message quotes user data (a duplicate entry
//! quotes its key). The number comes from the patched diesel-async
//! (vendor/diesel-async/PATCHED.md, docs/design/db-errors.md).

use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error};

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

/// ER_DUP_ENTRY, ER_DUP_ENTRY_WITH_KEY_NAME, ER_DUP_UNKNOWN_IN_INDEX.
const DUPLICATE: [u16; 3] = [1062, 1586, 1859];
/// ER_LOCK_DEADLOCK: InnoDB rolled the whole transaction back.
const DEADLOCK: u16 = 1213;
/// ER_LOCK_WAIT_TIMEOUT: only the statement was rolled back
/// (`innodb_rollback_on_timeout` is off by default); callers roll back the
/// transaction anyway and run it again.
const LOCK_WAIT_TIMEOUT: u16 = 1205;
/// CR_SERVER_GONE_ERROR and CR_SERVER_LOST (client codes a proxy may relay),
/// ER_SERVER_SHUTDOWN, MariaDB's ER_CONNECTION_KILLED, and MySQL's
/// ER_CLIENT_INTERACTION_TIMEOUT: the session is gone.
const CONNECTION_GONE: [u16; 5] = [2006, 2013, 1053, 1927, 4031];

/// The MySQL error number of a server error, as the patched diesel-async
/// reports it in `details()`: "mysql error <code> (<sqlstate>)".
pub fn mysql_code(info: &dyn DatabaseErrorInformation) -> Option<u16> {
    let rest = info.details()?.strip_prefix("mysql error ")?;
    let digits = rest.split(' ').next()?;
    digits.parse().ok()
}

/// Classifies `e`.
pub fn classify(e: &Error) -> ErrorClass {
    match e {
        Error::DatabaseError(kind, info) => {
            let code = mysql_code(info.as_ref());
            match (kind, code) {
                (DatabaseErrorKind::UniqueViolation, _) => ErrorClass::Duplicate,
                (_, Some(c)) if DUPLICATE.contains(&c) => ErrorClass::Duplicate,
                (DatabaseErrorKind::SerializationFailure, _) => ErrorClass::Contention,
                (_, Some(DEADLOCK | LOCK_WAIT_TIMEOUT)) => ErrorClass::Contention,
                (DatabaseErrorKind::ClosedConnection, _) => ErrorClass::Connection,
                (_, Some(c)) if CONNECTION_GONE.contains(&c) => ErrorClass::Connection,
                _ => ErrorClass::Permanent,
            }
        }
        // diesel-async's transaction manager gave up on the connection (a
        // transaction whose COMMIT or ROLLBACK was cut short).
        Error::BrokenTransactionManager => ErrorClass::Connection,
        _ => ErrorClass::Permanent,
    }
}

/// A unique-key violation: the row is already there.
pub fn is_duplicate(e: &Error) -> bool {
    classify(e) == ErrorClass::Duplicate
}

/// Deadlocks, lock wait timeouts and lost connections: the same work may
/// succeed when tried again. A duplicate is not retryable here: what to do
/// about it is the caller's (read what is there).
pub fn is_retryable(e: &Error) -> bool {
    matches!(classify(e), ErrorClass::Contention | ErrorClass::Connection)
}

/// Deadlock or lock wait timeout: the database is there, the work collided.
pub fn is_contention(e: &Error) -> bool {
    classify(e) == ErrorClass::Contention
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Info {
        message: &'static str,
        details: Option<String>,
    }
    impl DatabaseErrorInformation for Info {
        fn message(&self) -> &str {
            self.message
        }
        fn details(&self) -> Option<&str> {
            self.details.as_deref()
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

    /// A server error as the patched diesel-async builds it.
    fn server(kind: DatabaseErrorKind, code: u16, state: &str, message: &'static str) -> Error {
        let details = Some(format!("mysql error {code} ({state})"));
        Error::DatabaseError(kind, Box::new(Info { message, details }))
    }

    fn unknown(code: u16, message: &'static str) -> Error {
        server(DatabaseErrorKind::Unknown, code, "HY000", message)
    }

    /// Every word the old message matching looked for, in one message.
    const HOSTILE: &str = "Duplicate entry 'Deadlock connection Lock wait timeout \
        try restarting transaction server has gone away broken pipe' for key 'PRIMARY'";

    #[test]
    fn duplicates_by_number_whatever_the_message_says() {
        for code in DUPLICATE {
            let e = server(DatabaseErrorKind::UniqueViolation, code, "23000", HOSTILE);
            assert_eq!(classify(&e), ErrorClass::Duplicate, "{code}");
            assert!(is_duplicate(&e) && !is_retryable(&e) && !is_contention(&e));
            // The number alone is enough (a kind diesel-async did not map).
            assert_eq!(classify(&unknown(code, "")), ErrorClass::Duplicate);
        }
    }

    #[test]
    fn contention_by_number() {
        let deadlock = server(
            DatabaseErrorKind::SerializationFailure,
            1213,
            "40001",
            "Deadlock found when trying to get lock; try restarting transaction",
        );
        assert_eq!(classify(&deadlock), ErrorClass::Contention);
        assert!(is_retryable(&deadlock) && is_contention(&deadlock));
        let timeout = unknown(
            1205,
            "Lock wait timeout exceeded; try restarting transaction",
        );
        assert_eq!(classify(&timeout), ErrorClass::Contention);
        assert!(is_retryable(&timeout) && is_contention(&timeout));
    }

    #[test]
    fn lost_connections_by_number_or_kind() {
        for code in CONNECTION_GONE {
            let e = unknown(code, "");
            assert_eq!(classify(&e), ErrorClass::Connection, "{code}");
            assert!(is_retryable(&e) && !is_contention(&e));
        }
        let io = Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new(Info {
                message: "Input/output error: broken pipe",
                details: Some("mysql client: connection lost".into()),
            }),
        );
        assert_eq!(classify(&io), ErrorClass::Connection);
        assert_eq!(
            classify(&Error::BrokenTransactionManager),
            ErrorClass::Connection
        );
    }

    #[test]
    fn words_in_a_message_decide_nothing() {
        // The old code called these retryable or contention.
        for message in [
            "Deadlock found when trying to get lock; try restarting transaction",
            "Lock wait timeout exceeded",
            "Input/output error: Driver error: `Connection to the server is closed.'",
            HOSTILE,
        ] {
            let bare =
                Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_string()));
            assert_eq!(classify(&bare), ErrorClass::Permanent, "{message}");
            let syntax = unknown(1064, HOSTILE);
            assert_eq!(classify(&syntax), ErrorClass::Permanent);
        }
        assert_eq!(classify(&Error::NotFound), ErrorClass::Permanent);
        assert_eq!(
            classify(&Error::SerializationError("connection".into())),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn reads_the_number_from_details_only() {
        let info = Info {
            message: "mysql error 1213 (40001)",
            details: Some("mysql error 1062 (23000)".into()),
        };
        assert_eq!(mysql_code(&info), Some(1062));
        let info = Info {
            message: "mysql error 1213 (40001)",
            details: None,
        };
        assert_eq!(mysql_code(&info), None);
    }
}
