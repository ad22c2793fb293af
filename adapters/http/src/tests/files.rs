//! Handler tests of the file routes' query parameters.

use poem::http::StatusCode;

use super::fixtures::{ada, send, Ports};

#[tokio::test]
async fn a_percent_encoded_access_token_in_the_query_signs_the_caller_in() {
    let mut ports = Ports::default();
    let _ = ports.sign_in(&ada());
    let client = ports.client();

    let reply = send(client.get("/files/not-a-file-id?access_token=token%2Dof%2Dada")).await;

    reply.assert_error(StatusCode::NOT_FOUND, "not_found");
}
