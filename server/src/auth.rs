//! The optional bearer-token check on xlmc.v1 calls (`--auth-token`).

use tonic::{Request, Status, service::Interceptor};

/// Accepts every call when no token is configured; otherwise only
/// `authorization: Bearer <token>`, compared in constant time.
#[derive(Debug, Clone)]
pub struct BearerToken {
    expected: Option<Vec<u8>>,
}

impl BearerToken {
    pub fn new(token: Option<String>) -> Self {
        Self { expected: token.map(|t| format!("Bearer {t}").into_bytes()) }
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else { return Ok(request) };
        let given = request.metadata().get("authorization").map(|v| v.as_bytes()).unwrap_or_default();
        if constant_time_eq(given, expected) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("missing or wrong bearer token (--auth-token)"))
        }
    }
}

/// Whether two secrets are equal, in time that depends only on their lengths.
pub(crate) fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(check: &mut BearerToken, header: Option<&str>) -> Result<(), tonic::Code> {
        let mut request = Request::new(());
        if let Some(h) = header {
            request.metadata_mut().insert("authorization", h.parse().unwrap());
        }
        check.call(request).map(drop).map_err(|s| s.code())
    }

    #[test]
    fn only_the_configured_token_passes() {
        let mut open = BearerToken::new(None);
        assert_eq!(call(&mut open, None), Ok(()));
        let mut closed = BearerToken::new(Some("s3cret".into()));
        assert_eq!(call(&mut closed, Some("Bearer s3cret")), Ok(()));
        for wrong in [None, Some("Bearer s3cre"), Some("Bearer s3cret2"), Some("s3cret"), Some("Basic s3cret")] {
            assert_eq!(call(&mut closed, wrong), Err(tonic::Code::Unauthenticated), "{wrong:?}");
        }
    }
}
