"""What the HTTP surfaces share below them and none owns: request dependencies, request
bounds, the database-outage answer, and the presentation of refusals by the surface that
owns the request."""
