DROP TABLE participants;
DROP TABLE sessions;
