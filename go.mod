module drconsole

go 1.26.8
