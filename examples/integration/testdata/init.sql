CREATE TABLE accounts (id TEXT PRIMARY KEY, owner TEXT NOT NULL);
INSERT INTO accounts VALUES ('seed-1', 'seeded by an init script');
