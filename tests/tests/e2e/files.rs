//! e2e: files over HTTP and over the socket — sniffing, safe names and headers, limits, ranges, access.

use e2e::{TestApp, TestUser};
use futures::SinkExt;
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

async fn upload(
    app: &TestApp,
    user: &TestUser,
    room_id: &str,
    name: &str,
    declared: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let part = Part::bytes(bytes).file_name(name.to_owned()).mime_str(declared).expect("mime");
    let form = Form::new().text("room_id", room_id.to_owned()).part("file", part);
    let resp = app
        .http
        .post(app.url("/files"))
        .bearer_auth(&user.access_token)
        .multipart(form)
        .send()
        .await
        .expect("upload sent");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// How long a test waits for the answer to an upload the client stopped sending.
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A `POST /files` over a raw connection: `body` goes out whole (declared as `length`, or as one
/// chunk when `None`), then the client sends nothing more and waits, as a stalling client does.
/// The server must answer on what it has; the status and JSON body it answered come back.
async fn stalled_upload(app: &TestApp, user: &TestUser, length: Option<u64>, body: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(app.files_addr).await.expect("connect");
    let framing = length.map_or_else(|| "Transfer-Encoding: chunked".to_owned(), |n| format!("Content-Length: {n}"));
    let head = format!(
        "POST /files HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n\r\n",
        user.access_token
    );
    let mut request = head.into_bytes();
    if length.is_some() {
        request.extend_from_slice(body);
    } else {
        request.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
        request.extend_from_slice(b"\r\n");
    }
    raw.write_all(&request).await.expect("request sent");

    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = raw.read(&mut buf).await.expect("answer read");
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || complete_response(&answer) {
                return;
            }
        }
    };
    tokio::time::timeout(ANSWER_WAIT, read).await.expect("an answer without the rest of the body");
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let json = text.split_once("\r\n\r\n").and_then(|(_, body)| serde_json::from_str(body).ok()).unwrap_or(Value::Null);
    (status, json)
}

/// Whether `answer` holds a whole response: its head and `Content-Length` bytes of body.
fn complete_response(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|v| v.parse::<usize>().ok());
    length.is_some_and(|n| body.len() >= n)
}

const BOUNDARY: &str = "e2e-boundary";

async fn download(app: &TestApp, user: &TestUser, url: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = app.http.get(app.url(url)).bearer_auth(&user.access_token);
    if let Some(range) = range {
        req = req.header("range", range);
    }
    req.send().await.expect("download sent")
}

/// Every regular file under the data directory's file store.
fn stored_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&app.data_dir.path().join("files"), &mut out);
    out
}

async fn a_file_sent_over_the_socket_downloads_byte_identical_from_its_url() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();
    let mut socket = app.socket(&alice).await;
    let header = json!({"type": "send_file", "room_id": room, "client_msg_id": "f1", "name": "dot.png"}).to_string();

    socket.stream.send(Message::Binary(adapter_http::ws::frames::encode_binary(&header, PNG).into())).await.unwrap();
    let ack = socket.next_of("ack").await;

    let message = &ack["message"];
    assert_eq!(message["kind"], "image");
    assert_eq!(message["file"]["content_type"], "image/png");
    assert_eq!(message["file"]["size"], PNG.len());
    let resp = download(&app, &alice, message["file"]["url"].as_str().unwrap(), None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), PNG);
}

async fn a_file_uploaded_over_http_is_posted_by_a_send_with_its_file_id() {
    // Arrange
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let room = app.create_room(&alice, "private", &[&bob]).await["id"].as_str().unwrap().to_owned();
    let mut alice_socket = app.socket_on(&alice, 0).await;
    let mut bob_socket = app.socket_on(&bob, 1).await;
    let (status, file) = upload(&app, &alice, &room, "notes.txt", "text/plain", b"the notes".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "{file}");

    // Act
    alice_socket
        .send_json(json!({"type": "send", "room_id": room, "client_msg_id": "f1", "file_id": file["id"]}))
        .await;
    let ack = alice_socket.next_of("ack").await;
    let seen = bob_socket.next_of("message").await;

    // Assert
    assert_eq!(
        (ack["message"]["kind"].as_str(), ack["message"]["file"]["id"].as_str()),
        (Some("file"), file["id"].as_str())
    );
    assert_eq!(seen["message"]["file"]["name"], "notes.txt");
    let resp = download(&app, &bob, seen["message"]["file"]["url"].as_str().unwrap(), None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"the notes");
}

async fn a_send_with_a_file_id_that_is_not_the_senders_in_that_room_is_not_found() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let room = app.create_room(&alice, "private", &[&bob]).await["id"].as_str().unwrap().to_owned();
    let (_, file) = upload(&app, &alice, &room, "notes.txt", "text/plain", b"the notes".to_vec()).await;
    let mut bob_socket = app.socket(&bob).await;

    bob_socket.send_json(json!({"type": "send", "room_id": room, "client_msg_id": "b1", "file_id": file["id"]})).await;
    let refused = bob_socket.next_of("error").await;
    bob_socket
        .send_json(json!({"type": "send", "room_id": room, "client_msg_id": "b2", "text": "x", "file_id": file["id"]}))
        .await;
    let both = bob_socket.next_of("error").await;

    assert_eq!((refused["code"].as_str(), refused["client_msg_id"].as_str()), (Some("not_found"), Some("b1")));
    assert_eq!((both["code"].as_str(), both["client_msg_id"].as_str()), (Some("bad_request"), Some("b2")));
}

async fn an_uploaded_file_no_message_refers_to_is_deleted_after_its_window_and_a_posted_one_stays() {
    // Arrange: a one-second window, a purge every second.
    let app = TestApp::spawn_with(&[("CHAT_UNATTACHED_FILE_SECS", "1"), ("CHAT_PURGE_CRON", "* * * * * *")]).await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();
    let (_, orphan) = upload(&app, &alice, &room, "orphan.txt", "text/plain", b"nobody posts me".to_vec()).await;
    let (_, posted) = upload(&app, &alice, &room, "posted.txt", "text/plain", b"posted at once".to_vec()).await;
    let mut socket = app.socket(&alice).await;
    socket.send_json(json!({"type": "send", "room_id": room, "client_msg_id": "p1", "file_id": posted["id"]})).await;
    assert_eq!(socket.next_of("ack").await["message"]["kind"], "file");

    // Act: wait for the purge to delete the orphan.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while stored_files(&app).len() > 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Assert
    let left = stored_files(&app);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with(posted["id"].as_str().unwrap()), "{left:?}");
    let orphan_url = orphan["url"].as_str().unwrap();
    assert_eq!(download(&app, &alice, orphan_url, None).await.status(), StatusCode::GONE);
}

async fn a_pdf_is_described_as_a_pdf_but_served_as_an_attachment() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();

    let (status, file) =
        upload(&app, &alice, &room, "minutes.pdf", "application/octet-stream", b"%PDF-1.7\n%\xE2\xE3".to_vec()).await;

    assert_eq!(status, StatusCode::CREATED, "{file}");
    assert_eq!((file["kind"].as_str(), file["content_type"].as_str()), (Some("file"), Some("application/pdf")));
    let resp = download(&app, &alice, file["url"].as_str().unwrap(), None).await;
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert!(resp.headers()["content-disposition"].to_str().unwrap().starts_with("attachment;"));
}

async fn html_declared_as_png_is_served_as_an_octet_stream_attachment() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();

    let (status, file) =
        upload(&app, &alice, &room, "evil.png", "image/png", b"<html><script>alert(1)</script>".to_vec()).await;

    assert_eq!(status, StatusCode::CREATED, "{file}");
    assert_eq!(file["kind"], "file");
    let resp = download(&app, &alice, file["url"].as_str().unwrap(), None).await;
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert!(resp.headers()["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.headers()["content-security-policy"], "sandbox");
}

async fn hostile_names_are_kept_only_as_sanitised_metadata_inside_the_storage_root() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();
    let long = "ü".repeat(1000);
    // A NUL byte cannot travel in a multipart header; it comes over the socket's JSON header below.
    let names = ["../../etc/passwd", "/absolute/path.txt", long.as_str(), "日本語.txt"];

    for name in names {
        let (status, file) = upload(&app, &alice, &room, name, "text/plain", b"data".to_vec()).await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {file}");
        let stored = file["name"].as_str().unwrap();
        assert!(!stored.contains('/') && !stored.contains('\0') && stored.len() <= 255, "{stored}");
    }

    let mut socket = app.socket(&alice).await;
    let header = json!({"type": "send_file", "room_id": room, "client_msg_id": "nul", "name": "../nul\u{0}byte.txt"});
    let frame = adapter_http::ws::frames::encode_binary(&header.to_string(), b"data");
    socket.stream.send(Message::Binary(frame.into())).await.unwrap();
    let ack = socket.next_of("ack").await;
    assert_eq!(ack["message"]["file"]["name"], "nulbyte.txt");

    let root = app.data_dir.path().join("files");
    assert_eq!(stored_files(&app).len(), names.len() + 1);
    for path in stored_files(&app) {
        assert!(path.starts_with(&root), "{}", path.display());
        let leaf = path.file_name().unwrap().to_str().unwrap();
        assert!(leaf.parse::<uuid::Uuid>().is_ok(), "stored under a generated id, not a name: {leaf}");
    }
    assert!(!app.data_dir.path().join("etc").exists());
}

async fn an_oversize_upload_is_refused_with_413_and_leaves_nothing_on_disk() {
    let app = TestApp::spawn_with(&[("CHAT_FILE_MAX_BYTES", "1000")]).await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();

    let (status, body) = upload(&app, &alice, &room, "big.bin", "application/octet-stream", vec![1u8; 5000]).await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "too_large");
    assert!(stored_files(&app).is_empty(), "{:?}", stored_files(&app));
}

async fn an_upload_over_the_quota_is_refused_with_quota_exceeded() {
    let app = TestApp::spawn_with(&[("CHAT_USER_QUOTA_BYTES", "1500")]).await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();
    let (status, _) = upload(&app, &alice, &room, "a.bin", "application/octet-stream", vec![1u8; 1000]).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, body) = upload(&app, &alice, &room, "b.bin", "application/octet-stream", vec![1u8; 1000]).await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "quota_exceeded");
    assert_eq!(stored_files(&app).len(), 1);
}

async fn a_non_member_cannot_download_a_rooms_file() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mallory = app.signup("mallory").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();
    let (_, file) = upload(&app, &alice, &room, "secret.txt", "text/plain", b"secret".to_vec()).await;

    let resp = download(&app, &mallory, file["url"].as_str().unwrap(), None).await;

    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

async fn a_range_request_returns_exactly_the_requested_bytes() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (_, file) = upload(&app, &alice, &room, "data.bin", "application/octet-stream", content.clone()).await;
    let url = file["url"].as_str().unwrap();

    let resp = download(&app, &alice, url, Some("bytes=70000-70009")).await;

    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.headers()["content-range"], "bytes 70000-70009/200000");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &content[70_000..70_010]);
    let tail = download(&app, &alice, url, Some("bytes=-5")).await;
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &content[199_995..]);
    let bad = download(&app, &alice, url, Some("bytes=300000-")).await;
    assert_eq!(bad.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(bad.headers()["content-range"], "bytes */200000");
    let refusal: Value = bad.json().await.expect("a JSON error body");
    assert_eq!(refusal["code"], "range_not_satisfiable", "{refusal}");
}

async fn concurrent_uploads_do_not_interfere() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();

    let uploads = (0..8u8).map(|i| {
        let (app, alice, room) = (&app, &alice, &room);
        async move {
            let bytes = vec![i; 50_000 + usize::from(i)];
            let (status, file) =
                upload(app, alice, room, &format!("f{i}.bin"), "application/octet-stream", bytes.clone()).await;
            assert_eq!(status, StatusCode::CREATED);
            (file["url"].as_str().unwrap().to_owned(), bytes)
        }
    });
    let results = futures::future::join_all(uploads).await;

    for (url, bytes) in results {
        let got = download(&app, &alice, &url, None).await.bytes().await.unwrap();
        assert_eq!(got.as_ref(), bytes.as_slice());
    }
}

async fn downloads_accept_the_token_as_a_query_parameter() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();
    let (_, file) = upload(&app, &alice, &room, "p.png", "image/png", PNG.to_vec()).await;

    let url = format!("{}?access_token={}", file["url"].as_str().unwrap(), alice.access_token);
    let resp = app.http.get(app.url(&url)).send().await.unwrap();

    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert!(resp.headers()["content-disposition"].to_str().unwrap().starts_with("inline;"));
}

async fn the_internal_route_refuses_a_missing_or_wrong_service_token() {
    let token = "service-token-0123456789";
    let app = TestApp::spawn_with(&[("CHAT_INTERNAL_TOKEN", token)]).await;
    let url = app.url(&format!("/internal/files/{}?max_bytes=100", uuid::Uuid::now_v7()));
    let put = |auth: Option<String>| {
        let mut req = app.http.put(url.clone()).body(b"bytes".to_vec());
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        req.send()
    };

    let missing = put(None).await.expect("sent");
    let wrong = put(Some("Bearer service-token-0123456780".into())).await.expect("sent");
    let user_token = put(Some(format!("Bearer {}", app.signup("ada").await.access_token))).await.expect("sent");
    let right = put(Some(format!("Bearer {token}"))).await.expect("sent");

    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(user_token.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(right.status(), StatusCode::CREATED);
}

async fn parallel_uploads_never_store_more_than_the_quota() {
    // Arrange: room for five files of 200 kB, and twenty sent at once.
    const QUOTA: usize = 1_000_000;
    const SIZE: usize = 200_000;
    let app = TestApp::spawn_with(&[("CHAT_USER_QUOTA_BYTES", "1000000")]).await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();

    // Act
    let uploads = (0..20u8).map(|i| {
        let (app, alice, room) = (&app, &alice, &room);
        async move { upload(app, alice, room, &format!("f{i}.bin"), "application/octet-stream", vec![i; SIZE]).await }
    });
    let answers = futures::future::join_all(uploads).await;

    // Assert: every refusal names the quota, and what was stored fits in it.
    let created = answers.iter().filter(|(status, _)| *status == StatusCode::CREATED).count();
    for (status, body) in answers.iter().filter(|(status, _)| *status != StatusCode::CREATED) {
        assert_eq!((*status, body["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("quota_exceeded")), "{body}");
    }
    assert!(created >= 1, "at least the first upload fits");
    assert!(created * SIZE <= QUOTA, "{created} uploads of {SIZE} bytes stored against a quota of {QUOTA}");
    let on_disk: u64 = stored_files(&app).iter().map(|f| f.metadata().unwrap().len()).sum();
    assert!(on_disk <= QUOTA as u64, "{on_disk} bytes on disk");
}

async fn a_refused_upload_gives_its_held_quota_back() {
    // Arrange: a quota of 1000 bytes, and an upload refused for its size after its hold was taken.
    let app = TestApp::spawn_with(&[("CHAT_USER_QUOTA_BYTES", "1000"), ("CHAT_FILE_MAX_BYTES", "1000")]).await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();
    let (refused, _) = upload(&app, &alice, &room, "big.bin", "application/octet-stream", vec![1u8; 5000]).await;

    // Act
    let (status, body) = upload(&app, &alice, &room, "all.bin", "application/octet-stream", vec![1u8; 1000]).await;

    // Assert
    assert_eq!(refused, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn a_room_id_part_over_64_bytes_is_refused_with_400() {
    // Arrange: a real room id, padded past 64 bytes with spaces a trim would remove.
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();
    let padded = format!("{room}{}", " ".repeat(64));

    // Act
    let (status, body) = upload(&app, &alice, &padded, "a.txt", "text/plain", b"hello".to_vec()).await;

    // Assert
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_request");
    assert_eq!(body["message"], "room_id: at most 64 bytes");
    assert!(stored_files(&app).is_empty());
}

async fn a_declared_body_over_the_largest_file_is_refused_with_413_before_it_arrives() {
    // Arrange
    let app = TestApp::spawn_with(&[("CHAT_FILE_MAX_BYTES", "1000"), ("CHAT_IMAGE_MAX_BYTES", "1000")]).await;
    let alice = app.signup("alice").await;

    // Act: ten gigabytes announced, a hundred bytes sent.
    let (status, body) = stalled_upload(&app, &alice, Some(10 << 30), &[b'-'; 100]).await;

    // Assert: 1000 bytes of file and 16 KiB of form at most.
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "too_large");
    assert_eq!(body["message"], "the request body is larger than 17384 bytes");
}

async fn a_part_header_that_never_ends_is_refused_with_413() {
    // Arrange
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mut body = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"").into_bytes();
    body.extend_from_slice(&[b'a'; 9 * 1024]);

    // Act: no line break ever follows.
    let (status, answer) = stalled_upload(&app, &alice, None, &body).await;

    // Assert
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["code"], "too_large");
    assert_eq!(answer["message"], "multipart: the headers of a part are larger than 8192 bytes");
}

async fn a_form_past_the_largest_file_and_its_overhead_is_refused_with_413_while_it_streams() {
    // Arrange: an undeclared length, and a part the server does not use, larger than any form.
    let app = TestApp::spawn_with(&[("CHAT_FILE_MAX_BYTES", "1000"), ("CHAT_IMAGE_MAX_BYTES", "1000")]).await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"room_id\"\r\n\r\n{room}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&[b'n'; 20 * 1024]);

    // Act
    let (status, answer) = stalled_upload(&app, &alice, None, &body).await;

    // Assert
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["message"], "the request body is larger than 17384 bytes");
    assert!(stored_files(&app).is_empty());
}

async fn a_file_of_exactly_the_limit_fits_in_a_form_with_its_overhead() {
    let app = TestApp::spawn_with(&[("CHAT_FILE_MAX_BYTES", "1000"), ("CHAT_IMAGE_MAX_BYTES", "1000")]).await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();

    let (status, body) = upload(&app, &alice, &room, "max.bin", "application/octet-stream", vec![1u8; 1000]).await;

    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["size"], 1000);
}

async fn an_upload_that_is_not_a_multipart_form_is_a_415_naming_the_type_it_takes() {
    // Arrange
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().unwrap().to_owned();

    // Act
    let reply = app
        .send(
            app.http.post(app.url(&format!("/files?room_id={room}"))).bearer_auth(&alice.access_token).json(&json!({})),
        )
        .await;

    // Assert
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{reply:?}");
    assert_eq!(reply.body["code"], "unsupported_media_type");
    assert!(reply.body["message"].as_str().unwrap_or_default().contains("multipart/form-data"), "{reply:?}");
    assert!(stored_files(&app).is_empty());
}

e2e::on_both_shapes!(
    an_upload_that_is_not_a_multipart_form_is_a_415_naming_the_type_it_takes,
    the_internal_route_refuses_a_missing_or_wrong_service_token,
    a_file_sent_over_the_socket_downloads_byte_identical_from_its_url,
    html_declared_as_png_is_served_as_an_octet_stream_attachment,
    a_pdf_is_described_as_a_pdf_but_served_as_an_attachment,
    a_file_uploaded_over_http_is_posted_by_a_send_with_its_file_id,
    a_send_with_a_file_id_that_is_not_the_senders_in_that_room_is_not_found,
    an_uploaded_file_no_message_refers_to_is_deleted_after_its_window_and_a_posted_one_stays,
    hostile_names_are_kept_only_as_sanitised_metadata_inside_the_storage_root,
    an_oversize_upload_is_refused_with_413_and_leaves_nothing_on_disk,
    an_upload_over_the_quota_is_refused_with_quota_exceeded,
    a_non_member_cannot_download_a_rooms_file,
    a_range_request_returns_exactly_the_requested_bytes,
    concurrent_uploads_do_not_interfere,
    downloads_accept_the_token_as_a_query_parameter,
    parallel_uploads_never_store_more_than_the_quota,
    a_refused_upload_gives_its_held_quota_back,
    a_room_id_part_over_64_bytes_is_refused_with_400,
    a_declared_body_over_the_largest_file_is_refused_with_413_before_it_arrives,
    a_part_header_that_never_ends_is_refused_with_413,
    a_form_past_the_largest_file_and_its_overhead_is_refused_with_413_while_it_streams,
    a_file_of_exactly_the_limit_fits_in_a_form_with_its_overhead,
);

#[tokio::test]
async fn without_a_service_token_the_internal_routes_do_not_exist() {
    let app = TestApp::spawn().await;

    let url = app.url(&format!("/internal/files/{}?max_bytes=100", uuid::Uuid::now_v7()));
    let resp = app.http.put(url).header("authorization", "Bearer ").body(b"x".to_vec()).send().await.expect("sent");

    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// Moves a file's expiry into the past, as if its retention had run out (embedded catalog).
fn expire_in_catalog(app: &TestApp, file_id: &str) {
    let db = app.embedded_db();
    let changed = db.execute("UPDATE files SET expires_at = 0 WHERE id = ?1", [file_id]).expect("update");
    assert_eq!(changed, 1);
}

#[tokio::test]
async fn an_expired_file_answers_410_and_its_bytes_are_gone_after_a_purge() {
    // Arrange: purge every second; one file expired, one not.
    let app = TestApp::spawn_with(&[("CHAT_PURGE_CRON", "* * * * * *")]).await;
    let alice = app.signup("alice").await;
    let room = app.create_room(&alice, "private", &[]).await["id"].as_str().expect("room id").to_owned();
    let mut socket = app.socket(&alice).await;
    let header = json!({"type": "send_file", "room_id": room, "client_msg_id": "old", "name": "old.bin"}).to_string();
    socket
        .stream
        .send(Message::Binary(adapter_http::ws::frames::encode_binary(&header, b"old bytes").into()))
        .await
        .expect("sent");
    let old = socket.next_of("ack").await["message"]["file"].clone();
    let (_, fresh) = upload(&app, &alice, &room, "fresh.bin", "application/octet-stream", b"fresh".to_vec()).await;
    assert_eq!(stored_files(&app).len(), 2);

    // Act
    expire_in_catalog(&app, old["id"].as_str().expect("file id"));
    let gone = download(&app, &alice, old["url"].as_str().expect("url"), None).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stored_files(&app).len() > 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Assert: 410 before the purge, bytes gone after, the other file untouched, the message kept.
    assert_eq!(gone.status(), StatusCode::GONE);
    let left = stored_files(&app);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with(fresh["id"].as_str().expect("id")));
    assert_eq!(download(&app, &alice, old["url"].as_str().expect("url"), None).await.status(), StatusCode::GONE);
    let (_, history) = app.get(&format!("/rooms/{room}/messages"), &alice.access_token).await;
    assert_eq!(history["items"][0]["file"]["name"], "old.bin");
}
