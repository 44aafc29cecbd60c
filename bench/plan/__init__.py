"""What the user asks for: a scenario file parsed and validated into a
`Scenario` (`scenario`), its JSON schema for editors (`schema`), and which engines a
scenario's leftovers would be on (`leftovers`, for `bench clean`'s hint). Values here
come from someone else's file: they are checked once, here, before anything runs."""
