//! The face's own pieces, without a table: the public handles' auto
//! traits, the built-in UDFs' kernels on known answers, and how the command
//! line writes times and progress. (They live here rather than as unit
//! tests so that the root library is not compiled a second time in test
//! mode: minutes of a warm release build.)

mod builtins;
mod format;

fn send_and_sync<T: Send + Sync>() {}

#[test]
fn public_handles_are_send_and_sync() {
    send_and_sync::<leman::Database>();
    send_and_sync::<leman::Table>();
    send_and_sync::<leman::Job>();
    send_and_sync::<leman::Udf>();
    send_and_sync::<leman::UdfRegistry>();
    send_and_sync::<leman::BackfillOptions>();
    send_and_sync::<leman::Error>();
}
