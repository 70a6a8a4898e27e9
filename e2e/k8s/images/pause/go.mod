module oxbow.local/pause

go 1.25.0
