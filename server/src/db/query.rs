//! The query builder audits and revocations share: WHERE clauses with
//! their values numbered as they are added, and the identity selector's
//! clauses on an upload key `k`.

use provenix_provenance::audit::IdentitySelector;

pub(super) enum Bind {
    Int(i64),
    Text(String),
}

/// WHERE clauses and their values, numbered as they are added.
pub(super) struct Filter {
    clauses: Vec<String>,
    binds: Vec<Bind>,
}

impl Filter {
    pub(super) fn new() -> Filter {
        Filter {
            clauses: Vec::new(),
            binds: Vec::new(),
        }
    }

    pub(super) fn add(&mut self, clause: &str, value: Bind) {
        self.binds.push(value);
        self.clauses
            .push(clause.replace('?', &format!("${}", self.binds.len())));
    }

    /// A clause without a value.
    pub(super) fn add_unbound(&mut self, clause: &str) {
        self.clauses.push(clause.to_string());
    }

    /// `column IN (ids...)`.
    pub(super) fn add_in(&mut self, column: &str, ids: &[i64]) {
        let first = self.binds.len() + 1;
        self.binds.extend(ids.iter().map(|id| Bind::Int(*id)));
        self.clauses.push(format!(
            "{column} IN ({})",
            super::placeholders(first, ids.len())
        ));
    }

    /// `column` between `since` and `until` (inclusive), where given.
    pub(super) fn add_window(&mut self, column: &str, since: Option<i64>, until: Option<i64>) {
        if let Some(t) = since {
            self.add(&format!("{column} >= ?"), Bind::Int(t));
        }
        if let Some(t) = until {
            self.add(&format!("{column} <= ?"), Bind::Int(t));
        }
    }

    pub(super) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "TRUE".into()
        } else {
            self.clauses.join(" AND ")
        }
    }

    pub(super) fn query<'q>(
        &self,
        sql: String,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in &self.binds {
            q = match b {
                Bind::Int(i) => q.bind(*i),
                Bind::Text(s) => q.bind(s.clone()),
            };
        }
        q
    }
}

/// The identity filters, on the signing key `k`.
pub(super) fn identity_filters(f: &mut Filter, q: &IdentitySelector) {
    if let Some(r) = &q.repository {
        if q.repository_is_id() {
            f.add("k.repository_id = ?", Bind::Text(r.clone()));
        } else {
            // GitHub names are case-insensitive.
            f.add("LOWER(k.repository) = LOWER(?)", Bind::Text(r.clone()));
        }
    }
    if let Some(w) = &q.workflow {
        if q.workflow_is_ref() {
            f.add("k.workflow_ref = ?", Bind::Text(w.clone()));
        } else {
            f.add("k.workflow = ?", Bind::Text(w.clone()));
        }
    }
    if let Some(r) = &q.run_id {
        f.add("k.run_id = ?", Bind::Text(r.clone()));
    }
    if let Some(k) = &q.key {
        f.add("k.key_id = ?", Bind::Text(k.clone()));
    }
    if let Some(i) = &q.issuer {
        f.add("k.issuer = ?", Bind::Text(i.clone()));
    }
    if let Some(s) = &q.subject {
        f.add("k.subject = ?", Bind::Text(s.clone()));
    }
}
