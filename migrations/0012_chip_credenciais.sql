-- Each Z-API chip's own credentials (its instance id is chips.instance): the instance
-- token and, when the account has one, the Client-Token. Kept apart from `chips` so no
-- listing or export of chips can ever select them; read only by the send path.
CREATE TABLE chip_credenciais (
    chip_id       bigint PRIMARY KEY REFERENCES chips (id) ON DELETE CASCADE,
    token         text NOT NULL CHECK (token <> ''),
    client_token  text CHECK (client_token <> ''),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
