//! The route a request took, as a bounded metrics label: a template from a fixed list, never the raw path.

/// Every route this adapter serves, with `:name` for a path parameter.
const TEMPLATES: &[&str] = &[
    "/auth/register",
    "/auth/login",
    "/auth/refresh",
    "/auth/logout",
    "/users/me",
    "/rooms",
    "/rooms/public",
    "/rooms/:room_id",
    "/rooms/:room_id/join",
    "/rooms/:room_id/leave",
    "/rooms/:room_id/members",
    "/rooms/:room_id/members/:user_id",
    "/rooms/:room_id/messages",
    "/files",
    "/files/:file_id",
    "/internal/files/:file_id",
    "/ws",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/openapi.json",
    "/openapi.yaml",
    "/docs",
];

/// Methods we name; any other is counted as `OTHER`.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The template `path` matches, `/docs` for anything under it, or `unmatched`: the label set
/// stays as small as the route table whatever paths clients send.
pub(crate) fn route(path: &str) -> &'static str {
    if path == "/docs" || path.starts_with("/docs/") {
        return "/docs";
    }
    let segments: Vec<&str> = path.split('/').collect();
    TEMPLATES
        .iter()
        .find(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(part, seg)| part.starts_with(':') || part == seg)
        })
        .copied()
        .unwrap_or("unmatched")
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
    fn unknown_methods_are_other() {
        assert_eq!(method("GET"), "GET");
        assert_eq!(method("BREW"), "OTHER");
    }
}
