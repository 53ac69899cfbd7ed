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
