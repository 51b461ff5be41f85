"""Getting mail out: render, build the message, queue it, and hand it to a transport."""
