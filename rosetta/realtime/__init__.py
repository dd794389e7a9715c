"""Realtime delivery: the hub (audiences → subscribers), subscriptions, wire frames, WS and SSE."""
