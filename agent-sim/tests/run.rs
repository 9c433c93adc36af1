//! `agent-sim run`'s errors without a server: each says what to pass or to start instead. A fleet
//! against a running server is tested end to end in `tests/tests/agent_sim_run.rs`.

use std::process::{Command, Output};

fn agent_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agent-sim"))
        .args(args)
        .output()
        .expect("agent-sim runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unreadable_root_cert_says_which_file_to_pass() {
    let out = agent_sim(&[
        "run",
        "--xds",
        "https://127.0.0.1:15012",
        "--root-cert",
        "/nonexistent/root-cert.pem",
        "--ztunnels",
        "1",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot read the root bundle /nonexistent/root-cert.pem")
            && err.contains("root-cert.pem that `ambientd serve` prints"),
        "{err}"
    );
}

#[test]
fn a_bad_url_shows_the_expected_form() {
    let out = agent_sim(&["run", "--xds", "ftp://127.0.0.1:15012", "--ztunnels", "1"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("\"ftp://127.0.0.1:15012\" is not a server address")
            && err.contains("https://HOST:PORT"),
        "{err}"
    );
}

#[test]
fn an_unreachable_server_says_to_start_it() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = agent_sim(&["run", "--xds", &url, "--ztunnels", "1"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the xDS server {url} cannot be reached"))
            && err.contains(
                "is `ambientd serve` running there? start it, or point --xds at its gRPC address"
            ),
        "{err}"
    );
}

#[test]
fn a_bad_duration_names_the_flag() {
    let out = agent_sim(&[
        "run",
        "--xds",
        "http://127.0.0.1:15010",
        "--ztunnels",
        "1",
        "--for",
        "10x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("invalid value '10x' for '--for <DURATION>'"),
        "{err}"
    );
}
