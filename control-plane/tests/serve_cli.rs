//! The `ambientd serve` and `ambientd ca` commands as a user runs them: the start banner, SIGTERM, a port
//! in use, `--auth none` off loopback, and `ca root|issue|inspect`. Every server binds 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(30);

fn ambientd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ambientd"))
}

fn bookinfo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/bookinfo")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running `ambientd serve`; killed if the test fails before stopping it.
struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Serve {
    fn start(state: &Path, extra: &[&str]) -> Serve {
        let mut child = ambientd()
            .arg("serve")
            .arg("--config-dir")
            .arg(bookinfo())
            .arg("--state-dir")
            .arg(state)
            .args(["--grpc-addr", "127.0.0.1:0"])
            .args(["--xds-plaintext-addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ambientd serve");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Serve { child, lines }
    }

    /// Lines up to and including the first one containing `until`.
    fn read_until(&self, until: &str) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(until);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("no line with {until:?} ({e}); got:\n{}", seen.join("\n")),
            }
        }
    }

    /// Sends SIGTERM and waits for the exit.
    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ambientd did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn field<'a>(lines: &'a [String], key: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{}", lines.join("\n")))
        .trim()
}

#[test]
fn serve_prints_where_it_listens_the_root_bundle_and_the_ztunnel_environment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tokens = tmp.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        "lab-token: {namespace: backend, serviceAccount: bookinfo-details, podName: details-v1-558d6b8747-fd6nx}\n",
    )
    .expect("tokens");
    let state = tmp.path().join("state");
    let tokens_flag = format!("tokens={}", tokens.display());
    let serve = Serve::start(&state, &["--auth", &tokens_flag, "--auth", "cert"]);
    let banner = serve.read_until("ztunnel proxy");

    let grpc = field(&banner, "grpc:");
    let addr: SocketAddr = grpc
        .split_whitespace()
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("address in {grpc:?}"));
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0, "the real port, not the one asked for");

    let root = PathBuf::from(field(&banner, "root bundle:"));
    assert!(root.is_absolute(), "{}", root.display());
    assert!(root.starts_with(std::path::absolute(&state).expect("abs")));
    let pem = std::fs::read_to_string(&root).expect("root bundle written");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

    let text = banner.join("\n");
    for want in [
        format!("XDS_ADDRESS=https://{addr}"),
        format!("CA_ADDRESS=https://{addr}"),
        format!("XDS_ROOT_CA={}", root.display()),
        format!("CA_ROOT_CA={}", root.display()),
        format!(
            "AUTH_TOKEN={}",
            std::path::absolute(state.join("ztunnel-token"))
                .expect("abs")
                .display()
        ),
        "PROXY_MODE=dedicated".to_string(),
        "PROXY_WORKLOAD_INFO=backend/details-v1-558d6b8747-fd6nx/bookinfo-details".to_string(),
        "CLUSTER_ID=Kubernetes".to_string(),
    ] {
        assert!(text.contains(&want), "{want} in:\n{text}");
    }

    // ztunnel reads AUTH_TOKEN as a file and uses its bytes verbatim: no newline.
    assert_eq!(
        std::fs::read(state.join("ztunnel-token")).expect("token file"),
        b"lab-token"
    );

    let status = serve.terminate();
    assert!(status.success(), "exit after SIGTERM: {status}");

    // A second start reuses the root it created.
    let again = Serve::start(&state, &[]);
    let banner = again.read_until("ztunnel proxy");
    assert_eq!(PathBuf::from(field(&banner, "root bundle:")), root);
    assert_eq!(std::fs::read_to_string(&root).expect("root"), pem);
    assert!(again.terminate().success());
}

#[test]
fn serve_reports_a_port_in_use_by_address() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = ambientd()
        .arg("serve")
        .arg("--config-dir")
        .arg(bookinfo())
        .arg("--state-dir")
        .arg(tmp.path())
        .args(["--grpc-addr", &addr, "--xds-plaintext-addr", "off"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&addr), "{err}");
    assert!(err.contains("already in use"), "{err}");
    assert!(err.contains("--grpc-addr"), "{err}");
}

#[test]
fn serve_reports_a_plaintext_port_in_use_by_its_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = ambientd()
        .arg("serve")
        .arg("--config-dir")
        .arg(bookinfo())
        .arg("--state-dir")
        .arg(tmp.path())
        .args(["--grpc-addr", "127.0.0.1:0", "--xds-plaintext-addr", &addr])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&addr), "{err}");
    assert!(err.contains("--xds-plaintext-addr"), "{err}");
}

#[test]
fn serve_refuses_auth_none_off_loopback_before_listening() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = ambientd()
        .arg("serve")
        .arg("--config-dir")
        .arg(bookinfo())
        .arg("--state-dir")
        .arg(tmp.path())
        // Refused before anything binds: no socket is opened on this address.
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--xds-plaintext-addr",
            "0.0.0.0:0",
        ])
        .args(["--auth", "none"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = stderr(&out);
    // The plaintext listener counts too.
    assert!(err.contains("--auth none"), "{err}");
    assert!(err.contains("0.0.0.0:0"), "{err}");
}

#[test]
fn serve_allows_auth_none_on_loopback() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let serve = Serve::start(tmp.path(), &["--auth", "none"]);
    let banner = serve.read_until("ztunnel proxy").join("\n");
    assert!(banner.contains("auth:          none"), "{banner}");
    assert!(banner.contains("warning:"), "{banner}");
    assert!(serve.terminate().success());
}

#[test]
fn ca_root_issue_and_inspect() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let ca = |args: &[&str]| -> Output {
        ambientd()
            .arg("ca")
            .args(args)
            .arg("--state-dir")
            .arg(&state)
            .output()
            .expect("run ambientd ca")
    };

    let root = ca(&["root"]);
    assert!(root.status.success(), "{}", stderr(&root));
    let root_pem = stdout(&root);
    assert!(
        root_pem.starts_with("-----BEGIN CERTIFICATE-----"),
        "{root_pem}"
    );
    assert_eq!(stdout(&ca(&["root"])), root_pem, "the root is kept");

    let out_dir = tmp.path().join("sleep");
    let id = "spiffe://cluster.local/ns/frontend/sa/sleep";
    let issued = ca(&[
        "issue",
        "--spiffe",
        id,
        "--ttl",
        "2h",
        "--out",
        out_dir.to_str().expect("utf-8 path"),
    ]);
    assert!(issued.status.success(), "{}", stderr(&issued));
    for file in ["cert-chain.pem", "key.pem", "root-cert.pem"] {
        assert!(out_dir.join(file).is_file(), "{file}");
    }
    assert_eq!(
        std::fs::read_to_string(out_dir.join("root-cert.pem")).expect("root"),
        root_pem
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out_dir.join("key.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key.pem is private: {mode:o}");
    }

    let inspect = ambientd()
        .args(["ca", "inspect"])
        .arg(out_dir.join("cert-chain.pem"))
        .output()
        .expect("run");
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let text = stdout(&inspect);
    assert!(text.contains(&format!("SANs:       URI:{id}")), "{text}");
    assert!(text.contains("issuer:"), "{text}");
    assert!(text.contains("validity:"), "{text}");
    assert!(
        text.contains("expires in 1h 59m") || text.contains("expires in 2h 0m"),
        "{text}"
    );
    assert!(text.contains("CA:         no"), "{text}");

    let inspect_root = ambientd()
        .args(["ca", "inspect"])
        .arg(out_dir.join("root-cert.pem"))
        .output()
        .expect("run");
    assert!(stdout(&inspect_root).contains("CA:         yes"));

    let bad = ca(&[
        "issue",
        "--spiffe",
        "spiffe://cluster.local/default",
        "--out",
        "x",
    ]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("spiffe://<trust-domain>/ns/<ns>/sa/<sa>"),
        "{}",
        stderr(&bad)
    );

    let missing = ambientd()
        .args(["ca", "inspect"])
        .arg(tmp.path().join("nope.pem"))
        .output()
        .expect("run");
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("nope.pem"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn serve_refuses_kube_auth_without_a_cluster() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = ambientd()
        .arg("serve")
        .arg("--config-dir")
        .arg(bookinfo())
        .arg("--state-dir")
        .arg(tmp.path())
        .args(["--grpc-addr", "127.0.0.1:0", "--xds-plaintext-addr", "off"])
        .args(["--admin-addr", "off", "--auth", "kube"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--auth kube") && err.contains("--kube") && err.contains("tokens=FILE"),
        "{err}"
    );
}
