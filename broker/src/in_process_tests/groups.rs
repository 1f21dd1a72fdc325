//! A consumer group's join / sync / heartbeat cycle through the handlers (filled in below).
