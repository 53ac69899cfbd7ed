//! Reads with an `IN (...)` list that keep their prepared statement.
//!
//! diesel never caches a statement whose `IN` list comes from a `Vec`: its
//! text changes with the length, and caching every length would grow
//! without bound. So every batched read was prepare + execute + close.
//! Here the list is padded to the next power of two (by repeating its last
//! element, which changes nothing in an `IN`), so a statement has at most a
//! handful of texts, and [`Cached`] lets diesel cache them by their text:
//! one round trip per read instead of three, and no parse.

use diesel::{
    mysql::Mysql,
    query_builder::{AstPass, Query, QueryFragment, QueryId},
    QueryResult,
};

/// A query whose statement diesel may cache by its SQL text. Use it only
/// on queries whose text takes few forms (lists padded with [`pad`]).
#[derive(Debug, Clone, Copy)]
pub struct Cached<Q>(pub Q);

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: QueryFragment<Mysql>> QueryFragment<Mysql> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _: &Mysql) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// `items` padded to the next power of two with copies of its last element
/// (empty stays empty).
pub fn pad<T: Clone>(items: &[T]) -> Vec<T> {
    let mut v = items.to_vec();
    if let Some(last) = items.last() {
        v.resize(items.len().next_power_of_two(), last.clone());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::pad;

    #[test]
    fn pads_to_a_power_of_two_with_the_last_element() {
        assert!(pad::<u8>(&[]).is_empty());
        assert_eq!(pad(&[1]), vec![1]);
        assert_eq!(pad(&[1, 2, 3]), vec![1, 2, 3, 3]);
        assert_eq!(pad(&[1, 2, 3, 4]), vec![1, 2, 3, 4]);
        assert_eq!(pad(&[1, 2, 3, 4, 5]).len(), 8);
    }
}
