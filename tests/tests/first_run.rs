//! `ambientd serve --config-dir DIR` with no `--auth`, as a new user runs it: the server writes a token
//! for the pod its banner names (owner-only, in the state folder), admits callers with it before client
//! certificates, and the printed command carries it. An explicit `--auth` keeps what it says. Every
//! server binds 127.0.0.1.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ambient_ca::Identity;
use ambient_control_plane::ca_cli;
use ambient_control_plane::cli::{CaArgs, ServeArgs};
use ambient_control_plane::serve::{AuthMethod, ServeConfig};
use clap::{Args as _, FromArgMatches as _};
use support::*;
use tonic::Code;

/// What `ambientd serve` makes of these flags, on 127.0.0.1 ports picked by the system.
fn serve_config(state: &Path, extra: &[&str]) -> ServeConfig {
    let bookinfo = bookinfo();
    let state = state.display().to_string();
    let mut args = vec![
        "serve",
        "--config-dir",
        bookinfo.to_str().expect("utf-8 path"),
        "--state-dir",
        &state,
        "--grpc-addr",
        "127.0.0.1:0",
        "--xds-plaintext-addr",
        "off",
        "--admin-addr",
        "off",
    ];
    args.extend_from_slice(extra);
    let matches = ServeArgs::augment_args(clap::Command::new("serve"))
        .try_get_matches_from(&args)
        .expect("flags parse");
    ServeArgs::from_arg_matches(&matches)
        .expect("flags parse")
        .config()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("file").permissions().mode() & 0o777
}

async fn csr(
    server: &Running,
    token: Option<&str>,
    client_cert: Option<&ca_cli::Issued>,
) -> Result<Vec<String>, tonic::Status> {
    let client_auth = client_cert.map(|issued| {
        let read = |p: &PathBuf| std::fs::read_to_string(p).expect("issued file");
        (certs(&read(&issued.cert_chain)), key(&read(&issued.key)))
    });
    let (ch, _) = channel(server.addr, client_tls(&server.root_pem, client_auth)).await;
    ca_client(ch)
        .create_certificate(csr_request(ztunnel_csr(DETAILS_ID), token, None))
        .await
        .map(|r| r.into_inner().cert_chain)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_a_token_is_written_for_the_printed_pod_and_admits_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let cfg = serve_config(&state, &[]);
    assert_eq!(cfg.auth, [AuthMethod::FirstRunToken, AuthMethod::Cert]);
    let server = start(cfg).await;

    let tokens_path = std::path::absolute(state.join("first-run-tokens.yaml")).expect("abs");
    let token_path = std::path::absolute(state.join("ztunnel-token")).expect("abs");
    let token = std::fs::read_to_string(&token_path).expect("ztunnel-token written");
    assert_eq!(token.len(), 64, "{token:?}");
    let entries: BTreeMap<String, serde_json::Value> = serde_norway::from_str(
        &std::fs::read_to_string(&tokens_path).expect("first-run-tokens.yaml"),
    )
    .expect("tokens file");
    assert_eq!(
        entries,
        BTreeMap::from([(
            token.clone(),
            serde_json::json!({
                "namespace": "backend",
                "serviceAccount": "bookinfo-details",
                "podName": "details-v1-558d6b8747-fd6nx",
            })
        )])
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&tokens_path), 0o600);
        assert_eq!(mode(&token_path), 0o600);
    }

    // The banner says what it uses, and the command carries the token of the pod it names.
    for want in [
        format!("  auth:          tokens={}, cert", tokens_path.display()),
        "PROXY_WORKLOAD_INFO=backend/details-v1-558d6b8747-fd6nx/bookinfo-details".to_string(),
        format!("AUTH_TOKEN={}", token_path.display()),
    ] {
        assert!(
            server.banner.contains(&want),
            "{want} in:\n{}",
            server.banner
        );
    }
    assert!(
        !server.banner.contains("it needs a way to authenticate"),
        "{}",
        server.banner
    );

    // The token is the pod's identity; without it (and without a certificate) nobody is admitted.
    let chain = csr(&server, Some(&token), None)
        .await
        .expect("token admitted");
    assert_eq!(sans(&certs(&chain[0])[0]), [format!("URI:{DETAILS_ID}")]);
    let refused = csr(&server, None, None).await.expect_err("no credentials");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let refused = csr(&server, Some("not-the-token"), None)
        .await
        .expect_err("unknown token");
    assert_eq!(refused.code(), Code::Unauthenticated);

    // Client certificates of this CA are admitted after tokens.
    let issued = ca_cli::issue(
        &CaArgs {
            state_dir: state.clone(),
            ca_dir: None,
        },
        &DETAILS_ID.parse::<Identity>().expect("SPIFFE ID"),
        Duration::from_secs(3600),
        &dir.path().join("details"),
    )
    .expect("issue a client certificate");
    csr(&server, None, Some(&issued))
        .await
        .expect("client certificate admitted");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_auth_writes_no_token_and_keeps_its_methods() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let cfg = serve_config(&state, &["--auth", "cert"]);
    assert_eq!(cfg.auth, [AuthMethod::Cert]);
    let server = start(cfg).await;

    assert!(!state.join("first-run-tokens.yaml").exists());
    assert!(!state.join("ztunnel-token").exists());
    assert!(
        server.banner.contains("  auth:          cert\n"),
        "{}",
        server.banner
    );
    assert!(
        server.banner.contains(
            "(it needs a way to authenticate: start with --auth tokens=FILE holding a token for \
             backend/details-v1-558d6b8747-fd6nx/bookinfo-details, and this command gets its AUTH_TOKEN)"
        ),
        "{}",
        server.banner
    );
    assert!(!server.banner.contains("AUTH_TOKEN="), "{}", server.banner);
    let refused = csr(&server, Some("any-token"), None)
        .await
        .expect_err("tokens are not a method here");
    assert_eq!(refused.code(), Code::Unauthenticated);
    server.stop().await;
}
