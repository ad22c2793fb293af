//! The route table as data: a request's route as a bounded metrics label (a template, never the
//! raw path), and the methods a route allows, for the `Allow` header of a 405.

/// Every route this adapter serves, with `:name` for a path parameter, and its methods. A test
/// holds it to the OpenAPI spec, so the two cannot drift apart unnoticed.
const ROUTES: &[(&str, &str)] = &[
    ("/auth/register", "POST"),
    ("/auth/login", "POST"),
    ("/auth/refresh", "POST"),
    ("/auth/logout", "POST"),
    ("/users", "GET"),
    ("/users/me", "GET"),
    ("/users/me/settings", "GET, PUT"),
    ("/users/:user_id", "GET"),
    ("/rooms", "GET, POST"),
    ("/rooms/public", "GET"),
    ("/rooms/:room_id", "GET, DELETE"),
    ("/rooms/:room_id/join", "POST"),
    ("/rooms/:room_id/leave", "POST"),
    ("/rooms/:room_id/members", "POST"),
    ("/rooms/:room_id/members/:user_id", "DELETE"),
    ("/rooms/:room_id/messages", "GET"),
    ("/rooms/:room_id/messages/:seq", "PATCH, DELETE"),
    ("/rooms/:room_id/messages/:seq/reactions/:emoji", "PUT, DELETE"),
    ("/rooms/:room_id/presence", "GET"),
    ("/rooms/:room_id/read", "POST"),
    ("/dms", "POST"),
    ("/search", "GET"),
    ("/files", "POST"),
    ("/files/:file_id", "GET"),
    ("/internal/files/:file_id", "GET, PUT, DELETE"),
    ("/ws", "GET"),
    ("/health/live", "GET"),
    ("/health/ready", "GET"),
    ("/metrics", "GET"),
    ("/openapi.json", "GET"),
    ("/openapi.yaml", "GET"),
    ("/docs", "GET"),
];

/// Methods we name; any other is counted as `OTHER`.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The template `path` matches, `/docs` for anything under it, or `unmatched`: the label set
/// stays as small as the route table whatever paths clients send.
pub(crate) fn route(path: &str) -> &'static str {
    entry(path).map_or("unmatched", |(template, _)| template)
}

/// The methods `path` allows, as an `Allow` header value; `None` for a path no route serves.
pub(crate) fn allowed(path: &str) -> Option<&'static str> {
    entry(path).map(|(_, methods)| methods)
}

fn entry(path: &str) -> Option<(&'static str, &'static str)> {
    if path == "/docs" || path.starts_with("/docs/") {
        return Some(("/docs", "GET"));
    }
    let segments: Vec<&str> = path.split('/').collect();
    ROUTES.iter().copied().find(|(template, _)| {
        let parts: Vec<&str> = template.split('/').collect();
        parts.len() == segments.len()
            && parts.iter().zip(&segments).all(|(part, seg)| part.starts_with(':') || part == seg)
    })
}

pub(crate) fn method(method: &str) -> &'static str {
    METHODS.iter().find(|known| **known == method).copied().unwrap_or("OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_ids_become_their_template() {
        assert_eq!(
            route("/rooms/0191f0d4-6c7e-7cc3-8e3a-1a2b3c4d5e6f/members/abc"),
            "/rooms/:room_id/members/:user_id"
        );
        assert_eq!(route("/rooms/not-even-an-id"), "/rooms/:room_id");
        assert_eq!(route("/rooms/public"), "/rooms/public");
        assert_eq!(route("/docs/swagger-ui.css"), "/docs");
    }

    #[test]
    fn any_other_path_is_unmatched_so_it_cannot_grow_or_break_the_label_set() {
        assert_eq!(route("/x\""), "unmatched");
        assert_eq!(route(&format!("/{}", "a".repeat(10_000))), "unmatched");
        assert_eq!(route("/rooms/1/2/3/4"), "unmatched");
    }

    #[test]
    fn every_operation_of_the_spec_is_in_the_route_table_with_its_method() {
        let spec: serde_json::Value = serde_json::from_str(&crate::openapi().spec()).expect("the spec is JSON");
        for (path, operations) in spec["paths"].as_object().expect("paths") {
            let template = path.replace('{', ":").replace('}', "");
            let allowed = allowed(&template).unwrap_or_else(|| panic!("{path} is not in the route table"));
            for method in operations.as_object().expect("operations").keys() {
                let method = method.to_uppercase();
                assert!(allowed.split(", ").any(|m| m == method), "{method} {path} is not in the route table");
            }
        }
    }

    #[test]
    fn unknown_methods_are_other() {
        assert_eq!(method("GET"), "GET");
        assert_eq!(method("BREW"), "OTHER");
    }
}
