"""The outbound message queue (``fila_mensagens``): states, queue operations, the send pipeline."""
