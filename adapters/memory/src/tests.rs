//! Runs the `MessageLog`, `EventBus` and `PresenceRegistry` contracts against the in-memory adapters.

mod message_log {
    use application::contract::message_log::CACHE_PER_ROOM;
    use application::contract_tests;

    use crate::InMemoryMessageLog;

    application::message_log_contract!(contract_tests!(&InMemoryMessageLog::new(CACHE_PER_ROOM)));
    application::archive_queue_contract!(contract_tests!(&InMemoryMessageLog::new(CACHE_PER_ROOM)));
}

mod event_bus {
    use application::contract_tests;

    use crate::InMemoryEventBus;

    /// Every "node" is a clone of one bus: in one process, that is all a node can be.
    fn nodes() -> impl Fn() -> std::future::Ready<InMemoryEventBus> {
        let bus = InMemoryEventBus::default();
        move || std::future::ready(bus.clone())
    }

    application::event_bus_contract!(contract_tests!(nodes()));
}

mod presence {
    use application::contract_tests;

    use crate::InMemoryPresence;

    /// Every "node" is a clone of one registry, as the embedded server has one node.
    fn nodes() -> impl Fn() -> std::future::Ready<InMemoryPresence> {
        let registry = InMemoryPresence::default();
        move || std::future::ready(registry.clone())
    }

    application::presence_contract!(contract_tests!(nodes()));
}
