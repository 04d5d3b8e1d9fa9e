//! The writer actor of one fragment: a thin adapter over [`write_fragment`].

use std::ops::Range;

use lance_table::format::DataFile;
use leman_checkpoint::{CheckpointKey, Origin};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::fragment::{WriterContext, write_fragment};

/// Everything a writer needs to write its fragment.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FragmentWrite {
    /// Lance fragment id.
    pub fragment_id: u64,
    /// Batch checkpoints in physical row order.
    pub batches: Vec<(Range<u64>, CheckpointKey)>,
    /// Where the fragment checkpoint goes.
    pub fragment_key: CheckpointKey,
    /// The file the column's previous values came from.
    pub base_output_file: Option<String>,
    /// What the fragment key hashed (its data files: the fragment's input
    /// files), kept in the fragment's record for clean-up.
    pub origin: Origin,
    /// Which UDF the new file's values came from, as a fill tag, by the
    /// field id of the column that stands for them (the lead of unpacked
    /// siblings): one for each part whose values one UDF computed (none
    /// where some were kept from a file of unknown origin).
    pub fill_tags: Vec<(i32, String)>,
}

/// Messages a writer takes.
#[derive(Debug)]
pub enum WriterMsg {
    /// Write the fragment and reply with its new data file.
    Write { write: FragmentWrite, reply: RpcReplyPort<Result<DataFile, String>> },
}

/// What a writer is started with.
pub type WriterArgs = WriterContext;

/// The writer actor; see the [module docs](self).
#[derive(Debug, Default)]
pub struct Writer;

impl Actor for Writer {
    type Msg = WriterMsg;
    type State = WriterContext;
    type Arguments = WriterArgs;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, args: WriterArgs) -> Result<WriterContext, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(&self, _myself: ActorRef<Self::Msg>, message: WriterMsg, context: &mut WriterContext) -> Result<(), ActorProcessingErr> {
        match message {
            WriterMsg::Write { write, reply } => {
                let context = context.clone();
                tokio::spawn(async move {
                    let result = write_fragment(&context, write).await.map_err(|e| e.to_string());
                    let _ = reply.send(result);
                });
            }
        }
        Ok(())
    }
}
