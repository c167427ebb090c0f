#!/usr/bin/env python3
"""Writes dlib's frontal face detector as fkp-batch's HOG detector file (bench/dlib_hog/README.md).

usage: make_file.py OUT.safetensors sep.json hog.json POSES"""
import json,struct,numpy as np,sys
s=json.load(open(sys.argv[2])); h=json.load(open(sys.argv[3]))
K=len(s); P=31; T=max(len(p) for f in s for p in f); S=10
terms=np.zeros((K,P),np.float32); cols=np.zeros((K,P,T,S),np.float32); rows=np.zeros((K,P,T,S),np.float32)
for k,f in enumerate(s):
    for p,pl in enumerate(f):
        terms[k,p]=len(pl)
        for j,t in enumerate(pl): cols[k,p,j]=t['col']; rows[k,p,j]=t['row']
B=np.array([f['bias'] for f in h['filters']],np.float32)
meta={'format':'fkp-batch 1','model':'hog-face-detector',
 'source':'dlib 19.24 (Debian libdlib-dev 19.24+dfsg-1): get_frontal_face_detector(), its filters as its scanner runs them (build_fhog_filterbank) and its biases; written by bench/dlib_hog (dump.cpp, sep.cpp, make_file.py)',
 'licence':'Boost Software License 1.0 (dlib); samples/README.md','cell_size':'8','window':'80',
 'iou':repr(h['iou']),'covered':repr(h['covered']),'poses':sys.argv[4],
 'layout':'terms [filter, plane]; columns, rows [filter, plane, term, 10]: filter k on HOG plane p = sum over terms of outer(column, row); a window is a face when its response - bias >= 0'}
tens={'biases':B,'columns':cols,'rows':rows,'terms':terms}
hdr={'__metadata__':meta}; off=0; blobs=[]
for k in sorted(tens):
    b=tens[k].tobytes(); hdr[k]={'dtype':'F32','shape':list(tens[k].shape),'data_offsets':[off,off+len(b)]}; off+=len(b); blobs.append(b)
hb=json.dumps(hdr,separators=(',',':')).encode(); hb+=b' '*((8-len(hb)%8)%8)
with open(sys.argv[1],'wb') as f: f.write(struct.pack('<Q',len(hb))); f.write(hb); [f.write(b) for b in blobs]
