#!/usr/bin/env python3
# Linear probe of the shared MobileNetV2 on Flowers-102 (1..k shots, 5 validation images per class):
# picks the fast profile's head learning rate. Usage: linear_probe_flowers.py IMAGE_SIZE K [SHARED_DIR]
# Needs the venv's torch + torchvision and ../shared (never committed). Prints val accuracy per lr/steps.
import glob, os, random, sys, time
import torch, torchvision
from PIL import Image
torch.set_num_threads(2)
shared=sys.argv[3] if len(sys.argv)>3 else os.path.join(os.path.dirname(__file__),'..','..','..','shared')
root=os.path.join(shared,'data','flowers102','images')
classes=sorted(os.listdir(root))
random.seed(0)
train=[];val=[]
for ci,c in enumerate(classes):
    fs=sorted(glob.glob(f'{root}/{c}/*'))
    random.shuffle(fs)
    val += [(f,ci) for f in fs[:5]]
    train += [(f,ci) for f in fs[10:10+int(sys.argv[2])]]
m=torchvision.models.mobilenet_v2()
sd=torch.load(os.path.join(shared,'weights','mobilenet_v2-imagenet.pth'),weights_only=True)
m.load_state_dict(sd); m.eval()
S=int(sys.argv[1])
tf=torchvision.transforms.Compose([torchvision.transforms.Resize(int(S/0.875)),torchvision.transforms.CenterCrop(S),torchvision.transforms.ToTensor(),torchvision.transforms.Normalize([.5]*3,[.5]*3)])
def feats(items):
    out=[]
    with torch.no_grad():
        for i in range(0,len(items),64):
            x=torch.stack([tf(Image.open(f).convert('RGB')) for f,_ in items[i:i+64]])
            out.append(m.features(x).mean((2,3)))
    return torch.cat(out), torch.tensor([c for _,c in items])
t=time.time()
Xt,yt=feats(train); Xv,yv=feats(val)
print('features',S,'px',time.time()-t,'s', Xt.shape, 'mean|f|',Xt.abs().mean().item())
for lr in [3e-3,3e-2,1e-1,3e-1]:
  for steps in [48,150]:
    torch.manual_seed(0)
    head=torch.nn.Linear(1280,102); torch.nn.init.xavier_uniform_(head.weight); torch.nn.init.zeros_(head.bias)
    opt=torch.optim.SGD(head.parameters(),lr=lr,momentum=0.9,weight_decay=5e-3)
    n=len(yt)
    for s in range(steps):
        idx=torch.randint(0,n,(min(32,n),))
        for g in opt.param_groups: g['lr']=lr*0.5*(1+torch.cos(torch.tensor(3.14159*s/steps))).item()
        loss=torch.nn.functional.cross_entropy(head(Xt[idx]),yt[idx]); opt.zero_grad(); loss.backward(); opt.step()
    acc=(head(Xv).argmax(1)==yv).float().mean().item()
    print(f'lr {lr} steps {steps} val {100*acc:.1f}%')
