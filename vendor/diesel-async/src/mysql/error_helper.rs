use diesel::{result::DatabaseErrorKind, ConnectionError};
use mysql_async::{DriverError, Error};

pub(super) struct ErrorHelper(pub(super) Error);

// dop: the server's error number and SQLSTATE are kept (upstream keeps only
// the message): `details()` is "mysql error <code> (<sqlstate>)" for a server
// error, "mysql client: connection lost" for an I/O error or a closed
// connection, and absent otherwise. The message, which may quote user data
// (a duplicate entry quotes the key), is unchanged. Deadlock (1213) is a
// `SerializationFailure`: InnoDB has rolled the whole transaction back. An
// I/O error or a closed connection is a `ClosedConnection`.
struct MysqlErrorInfo {
    message: String,
    details: Option<String>,
}

impl diesel::result::DatabaseErrorInformation for MysqlErrorInfo {
    fn message(&self) -> &str {
        &self.message
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

impl From<ErrorHelper> for diesel::result::Error {
    fn from(ErrorHelper(e): ErrorHelper) -> Self {
        match e {
            Error::Server(e) => {
                let kind = match e.code {
                    1062 | 1586 | 1859 => DatabaseErrorKind::UniqueViolation,
                    1216 | 1217 | 1451 | 1452 | 1830 | 1834 => {
                        DatabaseErrorKind::ForeignKeyViolation
                    }
                    1792 => DatabaseErrorKind::ReadOnlyTransaction,
                    1048 | 1364 => DatabaseErrorKind::NotNullViolation,
                    3819 => DatabaseErrorKind::CheckViolation,
                    1213 => DatabaseErrorKind::SerializationFailure,
                    _ => DatabaseErrorKind::Unknown,
                };
                let details = Some(format!("mysql error {} ({})", e.code, e.state));
                let info = MysqlErrorInfo {
                    message: e.message,
                    details,
                };
                diesel::result::Error::DatabaseError(kind, Box::new(info) as _)
            }
            e @ (Error::Io(_) | Error::Driver(DriverError::ConnectionClosed)) => {
                let info = MysqlErrorInfo {
                    message: e.to_string(),
                    details: Some("mysql client: connection lost".to_string()),
                };
                diesel::result::Error::DatabaseError(
                    DatabaseErrorKind::ClosedConnection,
                    Box::new(info) as _,
                )
            }
            e => diesel::result::Error::DatabaseError(
                DatabaseErrorKind::Unknown,
                Box::new(e.to_string()) as _,
            ),
        }
    }
}

impl From<ErrorHelper> for diesel::result::ConnectionError {
    fn from(ErrorHelper(e): ErrorHelper) -> Self {
        match e {
            Error::Driver(e) => ConnectionError::BadConnection(e.to_string()),
            Error::Io(e) => ConnectionError::BadConnection(e.to_string()),
            Error::Other(e) => ConnectionError::BadConnection(e.to_string()),
            Error::Server(_) => ConnectionError::CouldntSetupConfiguration(ErrorHelper(e).into()),
            Error::Url(e) => ConnectionError::InvalidConnectionUrl(e.to_string()),
        }
    }
}
