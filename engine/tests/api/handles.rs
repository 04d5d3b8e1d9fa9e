//! Public handles are `Send + Sync`.

fn send_and_sync<T: Send + Sync>() {}

#[test]
fn public_handles_are_send_and_sync() {
    send_and_sync::<leman_engine::Job>();
    send_and_sync::<leman_engine::UdfRegistry>();
    send_and_sync::<leman_engine::BackfillOptions>();
    send_and_sync::<leman_engine::LocalExecutor>();
    send_and_sync::<leman_engine::TableStores>();
    send_and_sync::<leman_engine::Error>();
}
