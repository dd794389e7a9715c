"""SQL lives here and only here: functions that take a connection or transaction first."""
