//! What a token may do on which caches. The claim layout mirrors Attic's
//! (`caches: {pattern: {r, w, d, cc, cr, cq, cd}}`) plus `rv` (revoke) and
//! `au` (audit) for provenix's own capabilities.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::cache_name::pattern_matches;

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    #[serde(rename = "r", default, skip_serializing_if = "is_false")]
    pub pull: bool,
    #[serde(rename = "w", default, skip_serializing_if = "is_false")]
    pub push: bool,
    #[serde(rename = "d", default, skip_serializing_if = "is_false")]
    pub delete: bool,
    #[serde(rename = "cc", default, skip_serializing_if = "is_false")]
    pub create_cache: bool,
    #[serde(rename = "cr", default, skip_serializing_if = "is_false")]
    pub configure_cache: bool,
    #[serde(rename = "cq", default, skip_serializing_if = "is_false")]
    pub configure_cache_retention: bool,
    #[serde(rename = "cd", default, skip_serializing_if = "is_false")]
    pub destroy_cache: bool,
    #[serde(rename = "rv", default, skip_serializing_if = "is_false")]
    pub revoke: bool,
    #[serde(rename = "au", default, skip_serializing_if = "is_false")]
    pub audit: bool,
}

impl Permission {
    pub fn all() -> Self {
        Permission {
            pull: true,
            push: true,
            delete: true,
            create_cache: true,
            configure_cache: true,
            configure_cache_retention: true,
            destroy_cache: true,
            revoke: true,
            audit: true,
        }
    }

    pub fn union(self, o: Permission) -> Permission {
        Permission {
            pull: self.pull || o.pull,
            push: self.push || o.push,
            delete: self.delete || o.delete,
            create_cache: self.create_cache || o.create_cache,
            configure_cache: self.configure_cache || o.configure_cache,
            configure_cache_retention: self.configure_cache_retention
                || o.configure_cache_retention,
            destroy_cache: self.destroy_cache || o.destroy_cache,
            revoke: self.revoke || o.revoke,
            audit: self.audit || o.audit,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Permission::default()
    }
}

/// The `caches` claim: cache-name patterns to permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CachePermissions(pub BTreeMap<String, Permission>);

impl CachePermissions {
    /// The permissions a token holds on `cache`: the union over every pattern
    /// that matches it. A grant on `alice-*` and another on `*` both apply;
    /// no pattern can take away what another gives.
    pub fn for_cache(&self, cache: &str) -> Permission {
        self.0
            .iter()
            .filter(|(pattern, _)| pattern_matches(pattern, cache))
            .fold(Permission::default(), |acc, (_, p)| acc.union(*p))
    }

    /// Whether the token may pull from `cache`, given whether the cache is public.
    pub fn can_pull(&self, cache: &str, public: bool) -> bool {
        public || self.for_cache(cache).pull
    }

    pub fn grant(&mut self, pattern: &str, f: impl FnOnce(&mut Permission)) {
        f(self.0.entry(pattern.to_string()).or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_of_matching_patterns() {
        let mut caps = CachePermissions::default();
        caps.grant("alice-*", |p| p.push = true);
        caps.grant("*", |p| p.pull = true);
        caps.grant("bob", |p| p.destroy_cache = true);
        let a = caps.for_cache("alice-ci");
        assert!(a.push && a.pull && !a.destroy_cache);
        let b = caps.for_cache("bob");
        assert!(!b.push && b.pull && b.destroy_cache);
        assert!(!caps.for_cache("bobby").destroy_cache);
    }

    #[test]
    fn no_grant_means_nothing_except_public_pull() {
        let caps = CachePermissions::default();
        assert!(caps.for_cache("x").is_empty());
        assert!(caps.can_pull("x", true));
        assert!(!caps.can_pull("x", false));
    }

    #[test]
    fn claim_layout_is_attic_compatible() {
        let mut caps = CachePermissions::default();
        caps.grant("main", |p| {
            p.pull = true;
            p.push = true;
        });
        let json = serde_json::to_string(&caps).unwrap();
        assert_eq!(json, r#"{"main":{"r":true,"w":true}}"#);
        let back: CachePermissions = serde_json::from_str(&json).unwrap();
        assert_eq!(back, caps);
    }
}
