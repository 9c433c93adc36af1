//! `Server::run` as a supervisor sees it: when the index fails, the server stops on its own with an
//! error naming the object, rather than serving what may be a half-updated index. Every server binds
//! 127.0.0.1.

use std::time::Duration;

use ambient_control_plane::serve::{AuthMethod, ServeConfig, ServeError, Server};
use ambient_control_plane::shared_index::{IndexFailed, SharedIndex};
use ambient_control_plane::source::Event;
use ambient_index::Changes;

const PATIENCE: Duration = Duration::from_secs(30);

/// Fails the index as an update that panics would: no input makes the real index panic, so the update
/// of the pod `frontend/extra` is made to, and `SharedIndex` catches it as it catches any.
fn fail(index: &SharedIndex) -> IndexFailed {
    let extra = ambient_index::testing::pod("frontend", "extra").build();
    index
        .apply_with(vec![Event::Apply(extra)], |_, _| -> Changes {
            panic!("invariant broken")
        })
        .expect_err("the update panics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_index_stops_the_server_with_an_error_naming_the_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("config dir");
    let mut cfg = ServeConfig::new(&config_dir, dir.path().join("state"));
    cfg.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    cfg.auth = vec![AuthMethod::Cert];
    let server = Server::bind(cfg).await.expect("binds");
    let index = server.index();
    // Never signalled: the server must stop by itself.
    let running = tokio::spawn(server.run(std::future::pending()));

    // The index fails; the follower learns it from the next batch it applies.
    let failed_now = fail(&index);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: extra\n  namespace: frontend\nspec:\n  \
               serviceAccountName: sleep\n  containers: []\nstatus:\n  phase: Running\n  podIP: 10.244.0.99\n";
    std::fs::write(config_dir.join("extra.yaml"), pod).expect("write");

    let result = tokio::time::timeout(PATIENCE, running)
        .await
        .expect("the server stops by itself")
        .expect("server task");
    let Err(ServeError::IndexFailed(failed)) = result else {
        panic!("expected ServeError::IndexFailed, got {result:?}");
    };
    assert_eq!(failed, failed_now);
    assert_eq!(
        failed,
        IndexFailed {
            object: "Pod/frontend/extra".to_string(),
            message: "invariant broken".to_string(),
        }
    );
    assert_eq!(
        ServeError::IndexFailed(failed).to_string(),
        "applying Pod/frontend/extra panicked (invariant broken); the index may be half-updated, so \
         it is no longer served: restart ambientd to rebuild it from the source"
    );
}
