//! Authentication and entitlements for subscribers.
//!
//! Off unless `[auth]` is configured. When on, a client presents an HMAC-SHA256 signed
//! JWT at the WebSocket upgrade, in `Authorization: Bearer <token>` or, for browsers
//! (which cannot set headers on a WebSocket), in `?token=<token>`. A missing, malformed,
//! expired, not yet valid (`nbf`) or badly signed token gets HTTP 401 before any
//! upgrade; `exp` and `nbf` are both checked with the configured leeway. The token's claims
//! say which symbols the client may subscribe to and may lower its subscription limit:
//!
//! ```json
//! {"sub": "desk-7", "exp": 1798761600, "symbols": ["BINANCE:*", "SYM1"], "max_subscriptions": 50}
//! ```
//!
//! A symbol pattern is an exact name, a prefix ending in `*`, or `*` for everything.

use jsonwebtoken::{decode, errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Settings of `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The HMAC secret tokens are signed with (HS256). Required.
    pub jwt_secret: String,
    /// Accept the token in the `token` query parameter too. Default: true.
    #[serde(default = "yes")]
    pub allow_query_token: bool,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. Default: 30.
    #[serde(default = "thirty")]
    pub leeway_secs: u64,
}

fn yes() -> bool {
    true
}

fn thirty() -> u64 {
    30
}

/// The claims tickcast reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token is for (logged, not checked).
    #[serde(default)]
    pub sub: Option<String>,
    /// Expiry, seconds since the Unix epoch. Required.
    pub exp: u64,
    /// Not before, seconds since the Unix epoch: a token presented earlier (by more
    /// than the leeway) is refused. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Symbol patterns the client may subscribe to.
    #[serde(default)]
    pub symbols: Vec<String>,
    /// Lower subscription limit for this client, if any.
    #[serde(default)]
    pub max_subscriptions: Option<usize>,
}

/// What an authenticated client may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlements {
    /// Who (the `sub` claim).
    pub subject: Option<String>,
    patterns: Vec<String>,
    /// The client's own subscription limit.
    pub max_subscriptions: Option<usize>,
}

impl Entitlements {
    /// Whether the client may subscribe to `symbol`.
    pub fn allows(&self, symbol: &str) -> bool {
        self.patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => symbol.starts_with(prefix),
            None => p == symbol,
        })
    }
}

/// Why a token was refused. The text goes back to the client with the 401.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No token in the header or the query.
    #[error("missing token: send Authorization: Bearer <token> or ?token=<token>")]
    Missing,
    /// Not a JWT, or claims missing or of the wrong type.
    #[error("malformed token")]
    Malformed,
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
    /// Before its `nbf`.
    #[error("token not valid yet")]
    NotYetValid,
    /// Signed with another key or algorithm.
    #[error("invalid token signature")]
    BadSignature,
}

/// Checks the request's token and returns the client's entitlements.
pub fn authenticate(
    cfg: &AuthConfig,
    authorization: Option<&[u8]>,
    query: Option<&str>,
) -> Result<Entitlements, AuthError> {
    let from_header = authorization
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim);
    let from_query = if cfg.allow_query_token {
        query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")))
    } else {
        None
    };
    let token = from_header.or(from_query).ok_or(AuthError::Missing)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = cfg.leeway_secs;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp"]);
    let data = decode::<Claims>(
        token,
        &DecodingKey::from_secret(cfg.jwt_secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => AuthError::BadSignature,
        _ => AuthError::Malformed,
    })?;
    Ok(Entitlements {
        subject: data.claims.sub,
        patterns: data.claims.symbols,
        max_subscriptions: data.claims.max_subscriptions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn cfg() -> AuthConfig {
        AuthConfig {
            jwt_secret: "s3cret".into(),
            allow_query_token: true,
            leeway_secs: 0,
        }
    }

    fn token(secret: &str, exp: u64, symbols: &[&str]) -> String {
        let claims = Claims {
            sub: Some("t".into()),
            exp,
            nbf: None,
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            max_subscriptions: Some(3),
        };
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn future() -> u64 {
        crate::clock::now_ns() / 1_000_000_000 + 3_600
    }

    #[test]
    fn accepts_header_and_query_and_reads_entitlements() {
        let t = token("s3cret", future(), &["BINANCE:*", "SYM1"]);
        let e = authenticate(&cfg(), Some(format!("Bearer {t}").as_bytes()), None).unwrap();
        assert!(e.allows("BINANCE:BTCUSDT"));
        assert!(e.allows("SYM1"));
        assert!(!e.allows("SYM10"));
        assert!(!e.allows("COINBASE:BTC-USD"));
        assert_eq!(e.max_subscriptions, Some(3));
        let q = format!("a=1&token={t}");
        assert!(authenticate(&cfg(), None, Some(&q)).is_ok());
        let no_query = AuthConfig {
            allow_query_token: false,
            ..cfg()
        };
        assert_eq!(
            authenticate(&no_query, None, Some(&q)),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn refuses_bad_tokens() {
        let bearer = |t: &str| format!("Bearer {t}");
        assert_eq!(authenticate(&cfg(), None, None), Err(AuthError::Missing));
        assert_eq!(
            authenticate(&cfg(), Some(bearer("not-a-jwt").as_bytes()), None),
            Err(AuthError::Malformed)
        );
        let expired = token("s3cret", 1_000, &["*"]);
        assert_eq!(
            authenticate(&cfg(), Some(bearer(&expired).as_bytes()), None),
            Err(AuthError::Expired)
        );
        let forged = token("other", future(), &["*"]);
        assert_eq!(
            authenticate(&cfg(), Some(bearer(&forged).as_bytes()), None),
            Err(AuthError::BadSignature)
        );
    }

    fn now_secs() -> u64 {
        crate::clock::now_ns() / 1_000_000_000
    }

    fn token_nbf(nbf: u64) -> String {
        let claims = Claims {
            sub: None,
            exp: now_secs() + 3_600,
            nbf: Some(nbf),
            symbols: vec!["*".into()],
            max_subscriptions: None,
        };
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap()
    }

    #[test]
    fn nbf_in_the_future_is_refused_past_the_leeway() {
        let with_leeway = AuthConfig {
            leeway_secs: 60,
            ..cfg()
        };
        let check = |cfg: &AuthConfig, nbf: u64| {
            let t = token_nbf(nbf);
            authenticate(cfg, Some(format!("Bearer {t}").as_bytes()), None).map(|_| ())
        };
        let now = now_secs();
        // Already valid, or valid within the leeway: accepted.
        assert_eq!(check(&cfg(), now - 10), Ok(()));
        assert_eq!(check(&with_leeway, now + 30), Ok(()));
        // Later than the leeway allows: refused, like an expired token.
        assert_eq!(check(&cfg(), now + 30), Err(AuthError::NotYetValid));
        assert_eq!(check(&with_leeway, now + 600), Err(AuthError::NotYetValid));
        assert_eq!(AuthError::NotYetValid.to_string(), "token not valid yet");
    }
}
