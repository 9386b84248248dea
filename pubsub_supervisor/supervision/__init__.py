"""supervisord event listeners: stop on FATAL, and forward program logs to the console."""
