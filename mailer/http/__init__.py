"""What every HTTP surface shares and none owns: request bounds, the database-outage
answer, and the presentation of refusals by the surface that owns the request."""
