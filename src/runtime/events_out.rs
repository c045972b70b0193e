//! Where the host's events go out: to the log writer as they happen, and to the event
//! descriptor, which is readable exactly while undrained events wait.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::events::EventQueue;
use crate::logging::Logger;
use crate::os::Flag;

pub struct EventsOut {
    /// Readable while the host's event queue holds events.
    ready: Flag,
    flagged: bool,
    /// The host asked for the event fd (`fd`): it crosses a handover at its number.
    handed_out: bool,
    pub logger: Option<Arc<Logger>>,
}

impl EventsOut {
    pub fn new() -> std::io::Result<EventsOut> {
        Ok(EventsOut {
            ready: Flag::new()?,
            flagged: false,
            handed_out: false,
            logger: None,
        })
    }

    /// The event fd, for the host (which may poll it from now on).
    pub fn fd(&mut self) -> i32 {
        self.handed_out = true;
        self.ready.fd().as_raw_fd()
    }

    /// The event fd's number if the host has it, for the next image of the host (`handover`),
    /// which keeps it at that number.
    pub fn export(&self) -> Option<RawFd> {
        self.handed_out.then(|| self.ready.fd().as_raw_fd())
    }

    /// Takes over the event fd that the previous image of the host handed out (`export`), in
    /// place of this one's: a host that polls that number goes on polling it. It is readable
    /// again from the next `sync` on, as long as events wait.
    pub fn resume(&mut self, fd: OwnedFd) -> std::io::Result<()> {
        self.ready = Flag::inherited(fd)?;
        self.flagged = false;
        self.handed_out = true;
        Ok(())
    }

    /// Passes new events to the log writer, and makes the event fd readable exactly while the
    /// queue holds events.
    pub fn sync(&mut self, queue: &mut EventQueue) {
        let tapped = queue.take_tapped();
        if let Some(logger) = &self.logger {
            for event in &tapped {
                logger.log(event);
            }
        }
        let waiting = !queue.is_empty();
        if waiting != self.flagged {
            if waiting {
                self.ready.set();
            } else {
                self.ready.clear();
            }
            self.flagged = waiting;
        }
    }
}
