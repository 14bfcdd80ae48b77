"""Numbered schema migrations. Append new ones; never edit one that has landed."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema",
        """
        CREATE TABLE conversations (
            id          INTEGER PRIMARY KEY,
            title       TEXT NOT NULL DEFAULT 'New chat',
            created_at  REAL NOT NULL,
            updated_at  REAL NOT NULL
        );

        CREATE TABLE turns (
            id              INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            messages_json   TEXT NOT NULL,
            provider        TEXT NOT NULL,
            model           TEXT NOT NULL,
            params_json     TEXT NOT NULL,
            created_at      REAL NOT NULL
        );
        CREATE INDEX turns_by_conversation ON turns(conversation_id, id);

        CREATE TABLE candidates (
            id                INTEGER PRIMARY KEY,
            turn_id           INTEGER NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
            idx               INTEGER NOT NULL,
            text              TEXT NOT NULL,
            finish_reason     TEXT,
            latency_s         REAL,
            ttft_s            REAL,
            prompt_tokens     INTEGER,
            completion_tokens INTEGER,
            score             REAL,
            model_version     INTEGER,
            error             TEXT,
            UNIQUE (turn_id, idx)
        );

        -- One thumbs-up pick (or one imported preference) = one label = its pairs.
        CREATE TABLE labels (
            id                     INTEGER PRIMARY KEY,
            created_at             REAL NOT NULL,
            source                 TEXT NOT NULL CHECK (source IN ('pick', 'import', 'edit')),
            turn_id                INTEGER REFERENCES turns(id) ON DELETE SET NULL,
            chosen_candidate_id    INTEGER REFERENCES candidates(id) ON DELETE SET NULL,
            model_top_candidate_id INTEGER REFERENCES candidates(id) ON DELETE SET NULL,
            reason                 TEXT
        );
        CREATE INDEX labels_by_turn ON labels(turn_id);

        CREATE TABLE pairs (
            id                    INTEGER PRIMARY KEY,
            label_id              INTEGER NOT NULL REFERENCES labels(id) ON DELETE CASCADE,
            prompt_json           TEXT NOT NULL,
            chosen                TEXT NOT NULL,
            rejected              TEXT NOT NULL,
            chosen_candidate_id   INTEGER REFERENCES candidates(id) ON DELETE SET NULL,
            rejected_candidate_id INTEGER REFERENCES candidates(id) ON DELETE SET NULL,
            reason                TEXT,
            source                TEXT NOT NULL CHECK (source IN ('pick', 'import', 'edit')),
            created_at            REAL NOT NULL
        );
        CREATE INDEX pairs_by_label ON pairs(label_id);

        CREATE TABLE model_versions (
            version      INTEGER PRIMARY KEY,
            created_at   REAL NOT NULL,
            path         TEXT NOT NULL,
            metrics_json TEXT NOT NULL,
            pairs        INTEGER NOT NULL,
            labels       INTEGER NOT NULL
        );

        CREATE TABLE embeddings (
            embedder_id TEXT NOT NULL,
            text_hash   BLOB NOT NULL,
            dim         INTEGER NOT NULL,
            vector      BLOB NOT NULL,
            PRIMARY KEY (embedder_id, text_hash)
        ) WITHOUT ROWID;
        """,
    ),
    (
        2,
        "label kinds and provenance: display positions, blind turns, skips, rewrites",
        """
        ALTER TABLE turns ADD COLUMN blind INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE turns ADD COLUMN skipped_at REAL;

        -- Where the card was shown (0-based) and whether it is the user's rewrite.
        ALTER TABLE candidates ADD COLUMN position INTEGER;
        ALTER TABLE candidates ADD COLUMN source TEXT NOT NULL DEFAULT 'model'
            CHECK (source IN ('model', 'edit'));
        ALTER TABLE candidates ADD COLUMN edited_from INTEGER
            REFERENCES candidates(id) ON DELETE SET NULL;

        -- What the label says, and what the user saw: blind or not, the time to pick, the
        -- reward model's version and scores and the cards' positions at display time.
        ALTER TABLE labels ADD COLUMN kind TEXT NOT NULL DEFAULT 'pick'
            CHECK (kind IN ('pick', 'tie', 'all_bad', 'ranking', 'edit', 'import'));
        UPDATE labels SET kind = source;
        ALTER TABLE labels ADD COLUMN members_json TEXT;
        ALTER TABLE labels ADD COLUMN time_to_pick_s REAL;
        ALTER TABLE labels ADD COLUMN reward_version INTEGER;
        ALTER TABLE labels ADD COLUMN blind INTEGER;
        ALTER TABLE labels ADD COLUMN shown_json TEXT;
        CREATE INDEX labels_by_kind ON labels(kind);
        """,
    ),
    (
        3,
        "arena sources on candidates, weighted pairs (rankings)",
        """
        -- Where a candidate came from in an arena turn (a candidate source: its name, provider,
        -- model or deployment, temperature, chat-model version) as JSON; NULL for an ordinary
        -- turn, whose provider and model are the turn's.
        ALTER TABLE candidates ADD COLUMN origin_json TEXT;

        -- How much one pair counts in training: 1 for a pick's pairs; a full ranking of N
        -- replies yields N(N-1)/2 pairs weighted 2/N, so a ranked turn weighs what a pick does.
        ALTER TABLE pairs ADD COLUMN weight REAL NOT NULL DEFAULT 1.0;
        """,
    ),
    (
        4,
        "per-chat system prompt and model",
        """
        -- What a chat sends with every turn: its system prompt and its model (deployment,
        -- model name, or the built-in model or one of its tuned versions). NULL: the
        -- Settings' default (system prompt) or the provider's configured model.
        ALTER TABLE conversations ADD COLUMN system_prompt TEXT;
        ALTER TABLE conversations ADD COLUMN model TEXT;
        """,
    ),
    (
        5,
        "conversation branches: each turn's parent, each chat's active branch",
        """
        -- The turn this one continues (its history ends with that turn's reply); NULL: a
        -- turn that starts the chat. Editing a message makes a sibling of its turn (the same
        -- parent), so the old branch stays. Turns from before branches followed the turn
        -- before them: that is written down here, so NULL means one thing only.
        ALTER TABLE turns ADD COLUMN parent_turn_id INTEGER
            REFERENCES turns(id) ON DELETE SET NULL;
        UPDATE turns SET parent_turn_id = (
            SELECT MAX(p.id) FROM turns p
            WHERE p.conversation_id = turns.conversation_id AND p.id < turns.id);
        CREATE INDEX turns_by_parent ON turns(parent_turn_id);

        -- The last turn of the branch the chat shows and continues (remembered across
        -- restarts); NULL: its newest turn.
        ALTER TABLE conversations ADD COLUMN active_turn_id INTEGER
            REFERENCES turns(id) ON DELETE SET NULL;
        UPDATE conversations SET active_turn_id = (
            SELECT MAX(t.id) FROM turns t WHERE t.conversation_id = conversations.id);
        """,
    ),
]
