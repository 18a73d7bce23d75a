"""WhatsApp gateways: the port (:mod:`.base`) and its adapters (Evolution API v2, Z-API)."""
