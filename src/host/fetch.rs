//! Reading what a URL names, for `download:`: `file://` (a file of this machine, as curl reads
//! it) or `http://` and `https://` through ureq.
//!
//! Why ureq: a small blocking client, no async runtime. TLS is rustls with the ring provider
//! and the system's CA store (rustls-platform-verifier, which on Linux reads /etc/ssl/certs as
//! OpenSSL would), so a certificate the machine trusts is trusted and the static musl build
//! needs no OpenSSL. Proxies come from the environment as curl reads them: `ALL_PROXY`,
//! `HTTPS_PROXY`, `HTTP_PROXY` (either case; the first set wins, for every URL) and `NO_PROXY`.
//! Redirects are followed (at most 10); an HTTP error status is an error naming it.

use std::io::{self, Read};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// How long connecting to a server may take; the transfer itself has no time limit.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A stream of what `url` names.
pub fn fetch(url: &str) -> io::Result<Box<dyn Read + Send>> {
    if let Some(path) = url.strip_prefix("file://") {
        let file = crate::host::fs::open_input(Path::new(path))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot read {url}: {e}")))?;
        return Ok(Box::new(file));
    }
    let response = agent().get(url).call().map_err(|e| io::Error::other(format!("cannot download {url}: {e}")))?;
    Ok(Box::new(response.into_body().into_reader()))
}

/// The one HTTP client of a run (it keeps connections for the next download from a server).
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build();
        ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .tls_config(tls)
            .user_agent(concat!("converge/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent()
    })
}

/// Whether converge can download from `url` (its scheme): for the playbook's checks.
pub fn supported(url: &str) -> bool {
    ["file:///", "http://", "https://"].iter().any(|scheme| url.starts_with(scheme))
}
