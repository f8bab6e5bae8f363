module beyondfit.local/cluster/pause

go 1.23.0
