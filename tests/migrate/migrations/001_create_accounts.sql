-- Not idempotent on purpose: applying it twice fails ("relation already exists").
CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE
);
