//! A small builder for the filtered list queries (`WHERE … AND …`, bound parameters).

/// `SELECT … WHERE` conditions with their bound values, in order.
pub(crate) struct Query {
    sql: String,
    args: Vec<String>,
}

impl Query {
    /// Starts from `SELECT {cols} FROM {table}`.
    pub(crate) fn select(cols: &str, table: &str) -> Self {
        Self {
            sql: format!("SELECT {cols} FROM {table} WHERE 1 = 1"),
            args: Vec::new(),
        }
    }

    /// `AND col IN (…)` over known status names (never user text), unless empty.
    pub(crate) fn any_of(
        mut self,
        col: &str,
        values: impl IntoIterator<Item = &'static str>,
    ) -> Self {
        let list: Vec<String> = values.into_iter().map(|v| format!("'{v}'")).collect();
        if !list.is_empty() {
            self.sql
                .push_str(&format!(" AND {col} IN ({})", list.join(",")));
        }
        self
    }

    /// `AND col = ?` when `value` is given.
    pub(crate) fn eq(mut self, col: &str, value: Option<String>) -> Self {
        if let Some(v) = value {
            self.args.push(v);
            self.sql
                .push_str(&format!(" AND {col} = ?{}", self.args.len()));
        }
        self
    }

    /// `AND col >= ?` when `value` is given.
    pub(crate) fn at_least(mut self, col: &str, value: Option<i64>) -> Self {
        if let Some(v) = value {
            self.args.push(v.to_string());
            self.sql.push_str(&format!(
                " AND {col} >= CAST(?{} AS INTEGER)",
                self.args.len()
            ));
        }
        self
    }

    /// `AND (a LIKE ? OR b LIKE ? …)` (SQLite's LIKE ignores ASCII case) when
    /// `pattern` is given (made with [`harness_core::like_anywhere`]).
    pub(crate) fn like_any(mut self, cols: &[&str], pattern: Option<String>) -> Self {
        if let Some(p) = pattern {
            self.args.push(p);
            let n = self.args.len();
            let any: Vec<String> = cols
                .iter()
                .map(|c| format!("{c} LIKE ?{n} ESCAPE '\\'"))
                .collect();
            self.sql.push_str(&format!(" AND ({})", any.join(" OR ")));
        }
        self
    }

    /// A fixed condition, e.g. `parent_id IS NULL`, when `on`.
    pub(crate) fn when(mut self, on: bool, cond: &str) -> Self {
        if on {
            self.sql.push_str(&format!(" AND {cond}"));
        }
        self
    }

    /// Runs the query with `ORDER BY order` and `LIMIT limit` (0 = none).
    pub(crate) fn fetch<T>(
        mut self,
        c: &rusqlite::Connection,
        order: &str,
        limit: usize,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, crate::StoreError> {
        self.sql.push_str(&format!(" ORDER BY {order}"));
        if limit > 0 {
            self.sql.push_str(&format!(" LIMIT {limit}"));
        }
        let mut stmt = c.prepare_cached(&self.sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(self.args.iter()), row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
