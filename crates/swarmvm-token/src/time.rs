//! Time rules: `exp`, `nbf` and `iat` against a given time, never an implicit clock.

use serde_json::{Map, Value};

use crate::error::{Result, VerifyError};

/// Clock skew allowed on every time rule, in seconds.
pub const DEFAULT_LEEWAY: u64 = 60;

/// The time a token is checked against, and the allowed skew. For bundles this is the
/// manifest's `iat`, so a peer that joins a year later reaches the same decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeCheck {
    /// Unix seconds.
    pub now: u64,
    /// Seconds of skew allowed.
    pub leeway: u64,
}

impl TimeCheck {
    /// Checks at `now` (Unix seconds) with the default leeway.
    pub fn at(now: u64) -> Self {
        Self { now, leeway: DEFAULT_LEEWAY }
    }

    /// Checks at the system clock's current time.
    pub fn system_now() -> Self {
        Self::at(unix_now())
    }
}

/// The system clock in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The times a registration token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Validity {
    /// `iat`, when present.
    pub issued_at: Option<u64>,
    /// `nbf`, when present.
    pub not_before: Option<u64>,
    /// `exp`, when present (required for registration tokens).
    pub expires_at: Option<u64>,
}

/// A NumericDate claim (RFC 7519 §2): a non-negative integer number of seconds.
pub(crate) fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| VerifyError::InvalidClaim {
            claim: name.into(),
            reason: "not a non-negative integer number of seconds".into(),
        }),
    }
}

/// Checks `iat`, `nbf` and `exp` against `time`. With `max_lifetime`, `exp` must be present
/// and at most that many seconds after `iat` and after `time` (plus the leeway): a token from
/// another issuer cannot live longer than one we would issue.
pub(crate) fn check_times(
    claims: &Map<String, Value>,
    time: TimeCheck,
    max_lifetime: Option<u64>,
) -> Result<Validity> {
    let require_exp = max_lifetime.is_some();
    let validity = Validity {
        issued_at: numeric_date(claims, "iat")?,
        not_before: numeric_date(claims, "nbf")?,
        expires_at: numeric_date(claims, "exp")?,
    };
    let now = time.now;
    if let Some(exp) = validity.expires_at {
        if exp.saturating_add(time.leeway) <= now {
            return Err(VerifyError::Expired { exp, now });
        }
    } else if require_exp {
        return Err(VerifyError::MissingClaim("exp"));
    }
    if let Some(nbf) = validity.not_before
        && nbf > now.saturating_add(time.leeway)
    {
        return Err(VerifyError::NotYetValid { nbf, now });
    }
    if let Some(iat) = validity.issued_at
        && iat > now.saturating_add(time.leeway)
    {
        return Err(VerifyError::IssuedInFuture { iat, now });
    }
    if let (Some(max), Some(exp)) = (max_lifetime, validity.expires_at) {
        let from = validity.issued_at.unwrap_or(now).min(now);
        let limit = from.saturating_add(max).saturating_add(time.leeway);
        if exp > limit {
            return Err(VerifyError::LivesTooLong { exp, limit });
        }
    }
    Ok(validity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn time_rules_hold_at_the_given_time() {
        let t = TimeCheck { now: 1_000, leeway: 10 };
        let ttl = Some(100_000);
        assert!(check_times(&claims(json!({"exp": 1_005})), t, ttl).is_ok());
        assert!(matches!(
            check_times(&claims(json!({"exp": 990})), t, ttl),
            Err(VerifyError::Expired { exp: 990, now: 1_000 })
        ));
        assert!(matches!(
            check_times(&claims(json!({})), t, ttl),
            Err(VerifyError::MissingClaim("exp"))
        ));
        assert!(check_times(&claims(json!({})), t, None).is_ok());
        assert!(matches!(
            check_times(&claims(json!({"exp": 5_000, "nbf": 1_011})), t, ttl),
            Err(VerifyError::NotYetValid { .. })
        ));
        assert!(matches!(
            check_times(&claims(json!({"exp": 5_000, "iat": 2_000})), t, ttl),
            Err(VerifyError::IssuedInFuture { .. })
        ));
        for bad in [json!({"exp": -1}), json!({"exp": 1.5e3}), json!({"exp": "2000"})] {
            assert!(matches!(
                check_times(&claims(bad), t, ttl),
                Err(VerifyError::InvalidClaim { .. })
            ));
        }
    }

    #[test]
    fn lifetimes_are_capped_like_issuing_caps_them() {
        let t = TimeCheck { now: 1_000, leeway: 10 };
        let ttl = Some(100);
        assert!(check_times(&claims(json!({"exp": 1_110})), t, ttl).is_ok());
        assert!(check_times(&claims(json!({"iat": 990, "exp": 1_100})), t, ttl).is_ok());
        for (case, bad) in [
            ("past now + ttl", json!({"exp": 1_111})),
            ("past iat + ttl", json!({"iat": 900, "exp": 1_011})),
            ("near 2^64", json!({"exp": u64::MAX - 1})),
        ] {
            assert!(
                matches!(check_times(&claims(bad), t, ttl), Err(VerifyError::LivesTooLong { .. })),
                "{case}"
            );
        }
    }
}
