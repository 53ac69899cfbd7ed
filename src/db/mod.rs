//! Database access shared by the roles: pools, embedded migrations, and the
//! classification of database errors.

pub mod batch;
pub mod cached;
pub mod errors;
pub mod migrate;
pub mod pool;
pub mod script;

pub use errors::{classify, is_contention, is_duplicate, is_retryable, ErrorClass};
pub use pool::{connect_pool, Conn, DbPool, PoolError};
pub use script::Script;

/// Why a batched transaction did not do the batch.
#[derive(Debug)]
pub enum BatchError {
    /// Something in the batch is for the one-by-one path (a duplicate, an
    /// unknown saga...): the transaction was rolled back.
    Fallback,
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for BatchError {
    fn from(e: diesel::result::Error) -> Self {
        BatchError::Db(e)
    }
}
