//! Reload: a new configuration applies to connections accepted afterwards, while a session
//! in progress keeps the one it started with (nothing is dropped); pre-bound listeners work.

#[path = "support/fake.rs"]
mod fake;

use std::sync::Arc;

use cntlm::config::Config;
use fake::{ParentMode, TEST_TIMEOUT, TestClient, parent_config, start_origin, start_parent};

#[tokio::test]
async fn reloaded_config_applies_to_new_connections_only() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (origin, origin_rec) = start_origin().await;
        let (parent, parent_rec) = start_parent(ParentMode::Open).await;
        let mut first = parent_config(&[parent], false);
        first.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        // Pre-bound listener, as the service does before dropping privileges.
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_listener.local_addr().expect("addr");
        let proxy =
            cntlm::proxy::Proxy::with_listeners(Arc::new(first.clone()), vec![std_listener])
                .expect("proxy");
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(first));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(proxy.serve_reloadable(rx, async {
            let _ = stop_rx.await;
        }));
        let get = format!("GET http://{origin}/r HTTP/1.1\r\nHost: h\r\n\r\n");

        let mut old = TestClient::connect(addr).await;
        assert_eq!(old.request("GET", get.as_bytes()).await.head.status, 200);
        assert_eq!(
            parent_rec.requests().len(),
            1,
            "first config: through the parent"
        );

        // No parent: DIRECT; the same listener (a Listen it does not name would be closed).
        let reloaded = Config {
            listen: vec![addr],
            ..Config::default()
        };
        tx.send(Arc::new(reloaded)).expect("reload");
        // The reload task applies it before the next accept is served; a fresh connection
        // retried until it goes DIRECT keeps this free of timing assumptions.
        let mut direct_seen = false;
        for _ in 0..100 {
            let mut fresh = TestClient::connect(addr).await;
            assert_eq!(fresh.request("GET", get.as_bytes()).await.head.status, 200);
            if !origin_rec.requests().is_empty() {
                direct_seen = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(direct_seen, "new connections go DIRECT after the reload");

        // The old keep-alive session still uses the configuration it started with.
        let before = parent_rec.requests().len();
        assert_eq!(old.request("GET", get.as_bytes()).await.head.status, 200);
        assert_eq!(parent_rec.requests().len(), before + 1);

        let _ = stop_tx.send(());
        drop(old);
        task.await.expect("task").expect("serve");
    })
    .await
    .expect("test timed out");
}
