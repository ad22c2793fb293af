//! Shutdown of the apps that do not archive: they leave the shared archive queue to the worker.

use application::ports::MessageLog;
use bootstrap::{AppKind, Application, Config};

use crate::support::{append_many, new_room, seqs, World};

/// The settings a split app of this world needs; the file app is never reached here.
fn settings(world: &World, data_dir: &std::path::Path) -> Vec<(String, String)> {
    [
        ("CHAT_ADDR", "127.0.0.1:0".to_owned()),
        ("CHAT_DATA_DIR", data_dir.display().to_string()),
        ("CHAT_REDIS_URL", world.config.url.clone()),
        ("CHAT_REDIS_PREFIX", world.config.key_prefix.clone()),
        ("CHAT_MONGODB_URL", world.mongo_url.clone()),
        ("CHAT_JWT_SECRET", "0123456789abcdef0123456789abcdef".to_owned()),
        ("CHAT_INTERNAL_TOKEN", "0123456789abcdef".to_owned()),
        ("CHAT_FILE_URL", "http://127.0.0.1:1".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

#[tokio::test]
#[ignore = "needs Redis and MongoDB (scripts/test.sh)"]
async fn api_socket_and_file_apps_shutting_down_leave_queued_messages_to_the_worker() {
    // Arrange: five messages queued for archiving, and no worker running.
    let world = World::new().await;
    let appended = append_many(world.log.as_ref(), new_room(), 5).await;

    // Act: each app that is not a worker starts and shuts down cleanly.
    for kind in [AppKind::Api, AppKind::Socket, AppKind::File] {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config::from_vars(settings(&world, dir.path())).expect("settings");
        let app = Application::build(config, kind).await.expect("app builds");
        app.run_until_stopped(async {}).await.expect("clean shutdown");
    }

    // Assert: the worker still finds every message in the queue.
    let batch = world.log.claim_batch("worker", 100).await.expect("claim");
    let queued: Vec<_> = batch.into_iter().map(|q| q.message).collect();
    assert_eq!(seqs(&queued), seqs(&appended), "no app but the worker drains the archive queue");
}
