//! Database access shared by the roles: pools, embedded migrations, and the
//! classification of database errors.

pub mod errors;
pub mod migrate;
pub mod pool;

pub use errors::{is_contention, is_duplicate, is_retryable};
pub use pool::{connect_pool, Conn, DbPool, PoolError};
